"""Pictures for the docs: the contact sheet and the app screenshots."""
