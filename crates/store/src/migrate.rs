//! One migration scheme for every backend.
//!
//! A backend's schema is its history: an ordered list of [`Migration`] steps, each making one
//! version, strictly increasing. A database records the version it is at (SQLite in
//! `PRAGMA user_version`, PostgreSQL in its `countersign_migrations` ledger); opening it plans
//! with [`plan`], the one rule both backends use, and applies the pending steps in order, in one
//! transaction with the new version. A step is never edited once released: a change is a new
//! step.

/// A column a step adds to a table that existed before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Column {
    /// The table.
    pub table: &'static str,
    /// The column's name.
    pub name: &'static str,
    /// Its declaration after the name (`TEXT`).
    pub decl: &'static str,
}

/// One step of a backend's schema history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Migration {
    /// The schema version this step makes.
    pub version: i32,
    /// Columns added, before [`sql`](Migration::sql) runs, to those of these tables that exist
    /// and lack them (SQLite has no `ADD COLUMN IF NOT EXISTS`, and an old file may lack a table
    /// the step's `sql` then creates in its new shape).
    pub add_columns: &'static [Column],
    /// The statements of the step.
    pub sql: &'static str,
}

/// Why a database cannot be migrated by this build.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SchemaError {
    /// The database was made or migrated by a newer build.
    #[error("schema version {found} is newer than this build's {latest}; upgrade countersign")]
    Newer {
        /// The database's version.
        found: i32,
        /// The newest version this build knows.
        latest: i32,
    },
    /// The database was made by a development build whose schema has no migration.
    #[error(
        "schema version {found} was made by a development version of countersign and cannot be \
         migrated (the oldest this build migrates is {oldest}); move it aside and start again"
    )]
    Unmigratable {
        /// The database's version.
        found: i32,
        /// The oldest version this build migrates from (besides an empty database, 0).
        oldest: i32,
    },
}

/// The version the last of `steps` makes (0: none).
pub(crate) const fn latest(steps: &[Migration]) -> i32 {
    match steps.last() {
        Some(s) => s.version,
        None => 0,
    }
}

/// The steps to apply to a database at version `stored`, in order: none if it is current, every
/// step if it is empty (0). Refuses a database newer than the last step, and one at a version
/// below `oldest` (other than 0) or negative, which no step migrates.
pub(crate) fn plan(
    stored: i32,
    steps: &'static [Migration],
    oldest: i32,
) -> Result<&'static [Migration], SchemaError> {
    let latest = latest(steps);
    if stored > latest {
        return Err(SchemaError::Newer {
            found: stored,
            latest,
        });
    }
    if stored < 0 || (stored != 0 && stored < oldest) {
        return Err(SchemaError::Unmigratable {
            found: stored,
            oldest,
        });
    }
    let first = steps.partition_point(|s| s.version <= stored);
    Ok(&steps[first..])
}

/// Whether `steps` is a valid history: versions strictly increasing from above 0.
#[cfg(test)]
pub(crate) fn well_ordered(steps: &[Migration]) -> bool {
    steps.first().is_none_or(|s| s.version > 0)
        && steps.windows(2).all(|w| w[0].version < w[1].version)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: &[Migration] = &[
        Migration {
            version: 3,
            add_columns: &[],
            sql: "a",
        },
        Migration {
            version: 4,
            add_columns: &[],
            sql: "b",
        },
        Migration {
            version: 6,
            add_columns: &[],
            sql: "c",
        },
    ];

    #[test]
    fn both_backends_histories_are_strictly_increasing() {
        assert!(well_ordered(crate::sqlite::MIGRATIONS));
        assert!(well_ordered(crate::postgres::MIGRATIONS));
        // Outbox (#15) is SQLite 7 / PostgreSQL 6, static secrets (#18) 8 / 7, console sessions
        // (#16) 9 / 8, chat contacts (#15) 10 / 9, PostgreSQL's partial digest index (#20) - / 10.
        assert_eq!(latest(crate::sqlite::MIGRATIONS), 10);
        assert_eq!(crate::postgres::SCHEMA_VERSION, 10);
        assert!(!well_ordered(&[STEPS[1], STEPS[0]]));
        assert!(!well_ordered(&[STEPS[0], STEPS[0]]));
    }

    #[test]
    fn an_empty_database_gets_every_step_and_a_current_one_none() {
        assert_eq!(plan(0, STEPS, 3), Ok(STEPS));
        assert_eq!(plan(6, STEPS, 3), Ok(&STEPS[3..]));
    }

    #[test]
    fn an_older_database_gets_the_rest_in_order() {
        assert_eq!(plan(3, STEPS, 3), Ok(&STEPS[1..]));
        assert_eq!(plan(4, STEPS, 3), Ok(&STEPS[2..]));
        // A version between steps (5) takes the steps above it.
        assert_eq!(plan(5, STEPS, 3), Ok(&STEPS[2..]));
    }

    #[test]
    fn a_newer_or_unmigratable_database_is_refused() {
        let newer = plan(7, STEPS, 3).unwrap_err();
        assert_eq!(
            newer,
            SchemaError::Newer {
                found: 7,
                latest: 6
            }
        );
        let text = newer.to_string();
        assert!(text.contains('7') && text.contains('6'), "{text}");
        for dev in [1, 2, -1] {
            assert_eq!(
                plan(dev, STEPS, 3),
                Err(SchemaError::Unmigratable {
                    found: dev,
                    oldest: 3
                })
            );
        }
    }
}
