"""The analytics store: PostgreSQL tables and views, kept from the topics by the analytics sink."""
