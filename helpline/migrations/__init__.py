"""Alembic migrations, shipped inside the package; applied by `helpline migrate`."""
