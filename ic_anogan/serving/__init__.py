"""The SavedModel export and its client."""
