//! The tables a principal may read, as the engine its queries are routed to
//! lists them: what a door's metadata calls answer (Flight SQL's
//! `GetCatalogs`, `GetDbSchemas`, `GetTables`).
//!
//! Owns that listing: the engine's catalog (the query path's own cached
//! read, [`super::catalog`]) filtered by the policy of the store's current
//! snapshot ([`crate::access::AccessControl::access`]). It never answers
//! from the engine's full catalog: a table the policy does not grant is
//! never listed, so a user cannot learn that it exists. It runs no SQL of
//! its own (the catalog read is the one every query's rewrite uses).

use std::time::Instant;

use super::{QueryError, QueryService};
use crate::access::{AccessControl, Principal, TableKey};
use crate::store::AuthedPrincipal;

impl QueryService {
    /// The tables `who` is granted that the engine of their routing
    /// decision lists, sorted; when that engine cannot be reached, the next
    /// place's, as a query would move on.
    pub async fn granted_tables(&self, who: &AuthedPrincipal) -> Result<Vec<TableKey>, QueryError> {
        let deadline = Instant::now() + self.query_timeout;
        let policy = self.policy()?;
        let principal = Principal {
            user: who.user.clone(),
            groups: who.groups.clone(),
        };
        let catalog = self.routed_catalog(&principal, deadline).await?;
        let access: &dyn AccessControl = &policy.policy;
        let mut tables: Vec<TableKey> = catalog
            .tables
            .keys()
            .filter(|k| access.access(&principal, k).is_some())
            .cloned()
            .collect();
        tables.sort();
        Ok(tables)
    }
}
