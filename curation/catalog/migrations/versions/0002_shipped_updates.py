"""rename deployments to shipped_updates ("deployment" means a Prefect deployment only)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 09:00:00
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def _sqlite(old: tuple[str, str, str], new: tuple[str, str, str]) -> None:
    """SQLite: rename the table, then recreate it by a copy so its index and unique constraint get new names."""
    op.rename_table(old[0], new[0])
    with op.batch_alter_table(new[0], recreate="always") as batch_op:
        batch_op.drop_index(old[1])
        batch_op.create_index(new[1], ["model_version_id"], unique=False)
        batch_op.drop_constraint(old[2], type_="unique")
        batch_op.create_unique_constraint(new[2], ["model_version_id", "sequence"])


OLD = ("deployments", "ix_deployments_model_version_id", "uq_deployment_sequence")
NEW = ("shipped_updates", "ix_shipped_updates_model_version_id", "uq_shipped_update_sequence")


def upgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return _sqlite(OLD, NEW)
    # PostgreSQL renames in place, the implicit names (primary key, foreign keys, id sequence) included
    op.execute("ALTER TABLE deployments RENAME TO shipped_updates")
    op.execute("ALTER INDEX ix_deployments_model_version_id RENAME TO ix_shipped_updates_model_version_id")
    op.execute("ALTER TABLE shipped_updates RENAME CONSTRAINT uq_deployment_sequence TO uq_shipped_update_sequence")
    op.execute("ALTER TABLE shipped_updates RENAME CONSTRAINT deployments_pkey TO shipped_updates_pkey")
    op.execute(
        "ALTER TABLE shipped_updates RENAME CONSTRAINT deployments_model_version_id_fkey "
        "TO shipped_updates_model_version_id_fkey"
    )
    op.execute(
        "ALTER TABLE shipped_updates RENAME CONSTRAINT deployments_base_model_version_id_fkey "
        "TO shipped_updates_base_model_version_id_fkey"
    )
    op.execute("ALTER SEQUENCE deployments_id_seq RENAME TO shipped_updates_id_seq")


def downgrade() -> None:
    if op.get_context().dialect.name != "postgresql":
        return _sqlite(NEW, OLD)
    op.execute("ALTER SEQUENCE shipped_updates_id_seq RENAME TO deployments_id_seq")
    op.execute(
        "ALTER TABLE shipped_updates RENAME CONSTRAINT shipped_updates_base_model_version_id_fkey "
        "TO deployments_base_model_version_id_fkey"
    )
    op.execute(
        "ALTER TABLE shipped_updates RENAME CONSTRAINT shipped_updates_model_version_id_fkey "
        "TO deployments_model_version_id_fkey"
    )
    op.execute("ALTER TABLE shipped_updates RENAME CONSTRAINT shipped_updates_pkey TO deployments_pkey")
    op.execute("ALTER TABLE shipped_updates RENAME CONSTRAINT uq_shipped_update_sequence TO uq_deployment_sequence")
    op.execute("ALTER INDEX ix_shipped_updates_model_version_id RENAME TO ix_deployments_model_version_id")
    op.execute("ALTER TABLE shipped_updates RENAME TO deployments")
