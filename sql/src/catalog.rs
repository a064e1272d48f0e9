//! The store's catalog as DataFusion sees it: catalog `kalamstore`, one schema per namespace
//! (tables looked up in the store when a query names them; `<table>$meta` adds `_seq` and
//! `_updated`), plus `system` and `information_schema`. Namespace and table names are kept in
//! memory (DataFusion lists them synchronously) and re-read by [`KalamCatalog::refresh`].

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::common::{Result as DfResult, TableReference};
use datafusion::execution::session_state::SessionState;
use datafusion::sql::parser::Statement as DfStatement;
use kalamstore_storage::{Error, Store, TableId};

use crate::changes::Definitions;
use crate::error::{Result, SqlError, external};
use crate::pg_catalog::{PG_CATALOG, PgCatalog};
use crate::principal::Principal;
use crate::system::{INFORMATION_SCHEMA, SYSTEM, SystemSchema};
use crate::table::KalamTable;

/// The name of kalamstore's DataFusion catalog.
pub(crate) const CATALOG: &str = "kalamstore";

/// The suffix of a table name that also returns `_seq` and `_updated`.
pub const META_SUFFIX: &str = "$meta";

/// Namespaces and their tables.
#[derive(Debug)]
pub(crate) struct KalamCatalog {
    store: Store,
    principal: Principal,
    names: Arc<parking_lot::RwLock<BTreeMap<String, Vec<String>>>>,
    /// The definitions read by the last refresh (for planning that cannot wait on the store).
    pub(crate) definitions: Definitions,
}

impl KalamCatalog {
    pub(crate) fn new(store: Store, principal: Principal) -> Self {
        Self {
            store,
            principal,
            names: Arc::default(),
            definitions: Arc::default(),
        }
    }

    /// Re-reads the namespaces and their tables from the store.
    pub(crate) async fn refresh(&self) -> Result<()> {
        let mut names: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for ns in self.store.namespaces().await? {
            names.entry(ns.to_string()).or_default();
        }
        let mut definitions = BTreeMap::new();
        for def in self.store.tables(None).await? {
            names
                .entry(def.id.namespace.to_string())
                .or_default()
                .push(def.id.table.to_string());
            definitions.insert(def.id.clone(), def);
        }
        *self.names.write() = names;
        *self.definitions.write() = definitions;
        Ok(())
    }
}

impl KalamCatalog {
    /// Fails with a typed error when `statement` names a table that does not exist: a name
    /// without a namespace ([`SqlError::UnqualifiedTable`]), or a namespace's table the store
    /// does not hold (the store's `TableNotFound`). DataFusion would only report them as plan
    /// text; table functions and the system schemas are left to it.
    pub(crate) async fn check_tables(
        &self,
        state: &SessionState,
        statement: &DfStatement,
    ) -> Result<()> {
        for reference in state.resolve_table_references(statement)? {
            let (schema, table) = match &reference {
                TableReference::Bare { table }
                    if state.table_functions().contains_key(table.as_ref()) =>
                {
                    continue;
                }
                TableReference::Bare { table } => {
                    return Err(SqlError::UnqualifiedTable {
                        name: table.to_string(),
                    });
                }
                TableReference::Partial { schema, table } => (schema, table),
                TableReference::Full {
                    catalog,
                    schema,
                    table,
                } if catalog.as_ref() == CATALOG => (schema, table),
                TableReference::Full { .. } => continue,
            };
            if [SYSTEM, INFORMATION_SCHEMA, PG_CATALOG].contains(&schema.as_ref()) {
                continue;
            }
            let table = table.strip_suffix(META_SUFFIX).unwrap_or(table);
            // A name that is no table id is left to DataFusion's own error.
            if let Ok(id) = format!("{schema}.{table}").parse::<TableId>() {
                self.store.table(&id).await?;
            }
        }
        Ok(())
    }
}

impl CatalogProvider for KalamCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.names.read().keys().cloned().collect();
        names.extend([
            SYSTEM.to_owned(),
            INFORMATION_SCHEMA.to_owned(),
            PG_CATALOG.to_owned(),
        ]);
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == PG_CATALOG {
            return Some(Arc::new(PgCatalog::new(self.store.clone())));
        }
        if name == SYSTEM || name == INFORMATION_SCHEMA {
            return Some(Arc::new(SystemSchema::new(
                name,
                self.store.clone(),
                self.principal.clone(),
            )));
        }
        self.names.read().contains_key(name).then(|| {
            Arc::new(NamespaceSchema {
                namespace: name.to_owned(),
                store: self.store.clone(),
                principal: self.principal.clone(),
                names: self.names.clone(),
            }) as Arc<dyn SchemaProvider>
        })
    }
}

/// The tables of one namespace.
#[derive(Debug)]
struct NamespaceSchema {
    namespace: String,
    store: Store,
    principal: Principal,
    names: Arc<parking_lot::RwLock<BTreeMap<String, Vec<String>>>>,
}

#[async_trait]
impl SchemaProvider for NamespaceSchema {
    fn table_names(&self) -> Vec<String> {
        self.names
            .read()
            .get(&self.namespace)
            .cloned()
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> DfResult<Option<Arc<dyn TableProvider>>> {
        let (table, with_system) = match name.strip_suffix(META_SUFFIX) {
            Some(t) => (t, true),
            None => (name, false),
        };
        let Ok(id) = format!("{}.{table}", self.namespace).parse::<TableId>() else {
            return Ok(None);
        };
        match self.store.table(&id).await {
            Ok(def) => Ok(Some(Arc::new(KalamTable::new(
                self.store.clone(),
                def,
                self.principal.clone(),
                with_system,
            )))),
            Err(Error::TableNotFound { .. }) => Ok(None),
            Err(e) => Err(external(e)),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        let table = name.strip_suffix(META_SUFFIX).unwrap_or(name);
        self.table_names().iter().any(|t| t == table)
    }
}
