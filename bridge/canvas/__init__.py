"""The Canvas side: typed models and the async API client."""
