//! The catalog tables psql consults for sections kalamstore has none of (policies, triggers,
//! publications, ...): empty, with the columns those queries read.

use arrow::datatypes::DataType;

/// Empty tables and the columns their queries use.
pub(super) const EMPTY: &[(&str, &[(&str, DataType)])] = &[
    (
        "pg_collation",
        &[("oid", DataType::Int64), ("collname", DataType::Utf8)],
    ),
    (
        "pg_constraint",
        &[
            ("oid", DataType::Int64),
            ("conname", DataType::Utf8),
            ("conrelid", DataType::Int64),
            ("contype", DataType::Utf8),
            ("conindid", DataType::Int64),
            ("confrelid", DataType::Int64),
            ("conparentid", DataType::Int64),
            ("condeferrable", DataType::Boolean),
            ("condeferred", DataType::Boolean),
            ("convalidated", DataType::Boolean),
            ("conislocal", DataType::Boolean),
            ("connamespace", DataType::Int64),
        ],
    ),
    (
        "pg_policy",
        &[
            ("polname", DataType::Utf8),
            ("polrelid", DataType::Int64),
            ("polpermissive", DataType::Boolean),
            ("polroles", DataType::Utf8),
            ("polqual", DataType::Utf8),
            ("polwithcheck", DataType::Utf8),
            ("polcmd", DataType::Utf8),
        ],
    ),
    (
        "pg_statistic_ext",
        &[
            ("oid", DataType::Int64),
            ("stxrelid", DataType::Int64),
            ("stxname", DataType::Utf8),
            ("stxnamespace", DataType::Int64),
            ("stxkind", DataType::Utf8),
            ("stxstattarget", DataType::Int32),
        ],
    ),
    (
        "pg_publication",
        &[
            ("oid", DataType::Int64),
            ("pubname", DataType::Utf8),
            ("puballtables", DataType::Boolean),
        ],
    ),
    (
        "pg_publication_rel",
        &[("prpubid", DataType::Int64), ("prrelid", DataType::Int64)],
    ),
    (
        "pg_publication_namespace",
        &[("pnpubid", DataType::Int64), ("pnnspid", DataType::Int64)],
    ),
    (
        "pg_inherits",
        &[
            ("inhrelid", DataType::Int64),
            ("inhparent", DataType::Int64),
            ("inhseqno", DataType::Int32),
        ],
    ),
    (
        "pg_trigger",
        &[
            ("oid", DataType::Int64),
            ("tgrelid", DataType::Int64),
            ("tgname", DataType::Utf8),
            ("tgisinternal", DataType::Boolean),
            ("tgenabled", DataType::Utf8),
            ("tgparentid", DataType::Int64),
        ],
    ),
    (
        "pg_rewrite",
        &[
            ("oid", DataType::Int64),
            ("ev_class", DataType::Int64),
            ("rulename", DataType::Utf8),
        ],
    ),
    (
        "pg_foreign_table",
        &[("ftrelid", DataType::Int64), ("ftserver", DataType::Int64)],
    ),
    ("pg_partitioned_table", &[("partrelid", DataType::Int64)]),
    (
        "pg_description",
        &[
            ("objoid", DataType::Int64),
            ("classoid", DataType::Int64),
            ("objsubid", DataType::Int32),
            ("description", DataType::Utf8),
        ],
    ),
];
