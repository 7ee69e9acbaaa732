"""rename deployments to shipped_updates ("deployment" means a Prefect deployment only)

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-03 09:00:00
"""

from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None

# (old, new) names of every object the table owns, PostgreSQL's implicit ones included
NAMES = {
    "table": ("deployments", "shipped_updates"),
    "index": ("ix_deployments_model_version_id", "ix_shipped_updates_model_version_id"),
    "unique": ("uq_deployment_sequence", "uq_shipped_update_sequence"),
}
POSTGRES = [("deployments_pkey", "shipped_updates_pkey"),
            ("deployments_model_version_id_fkey", "shipped_updates_model_version_id_fkey"),
            ("deployments_base_model_version_id_fkey", "shipped_updates_base_model_version_id_fkey")]


def _rename(old: int, new: int) -> None:
    (table, index, unique) = ((names[old], names[new]) for names in NAMES.values())
    op.rename_table(table[0], table[1])
    if op.get_context().dialect.name == "postgresql":
        op.execute(f"ALTER INDEX {index[0]} RENAME TO {index[1]}")
        for pair in [unique, *POSTGRES]:
            a, b = pair if old == 0 else pair[::-1]
            op.execute(f"ALTER TABLE {table[1]} RENAME CONSTRAINT {a} TO {b}")
        op.execute(f"ALTER SEQUENCE {table[0]}_id_seq RENAME TO {table[1]}_id_seq")
        return
    with op.batch_alter_table(table[1], recreate="always") as batch_op:  # SQLite: names change by a copy
        batch_op.drop_index(index[0])
        batch_op.create_index(index[1], ["model_version_id"], unique=False)
        batch_op.drop_constraint(unique[0], type_="unique")
        batch_op.create_unique_constraint(unique[1], ["model_version_id", "sequence"])


def upgrade() -> None:
    _rename(0, 1)


def downgrade() -> None:
    _rename(1, 0)
