"""Route modules of the API; each one adds its views to `bp`."""
