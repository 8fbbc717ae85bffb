"""Staff accounts, roles, login and the console API."""
