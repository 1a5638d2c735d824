"""Follow-up work for people: call-backs after missed calls, and later other to-dos."""
