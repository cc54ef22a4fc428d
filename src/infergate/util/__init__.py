"""Small helpers shared by several components (no domain logic here)."""
