"""Engagement: message templates per channel, segments, journeys, campaigns, the rules that keep
marketing welcome (consent, quiet hours, fatigue), recommendations and the virtual assistant."""
