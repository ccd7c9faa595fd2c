"""The dashboard: district, school, class and student views and sync health, over the analytics store."""
