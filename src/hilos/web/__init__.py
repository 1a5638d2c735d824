"""The web domain: the server-rendered agent console (sign-in, inbox, conversations, customers).

It owns the console's sign-in sessions and its pages; everything it shows or changes goes
through the other domains' services, with the signed-in agent's tenant, so the console sees
exactly what the API would show that tenant.
"""
