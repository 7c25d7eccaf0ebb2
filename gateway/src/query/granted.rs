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

use super::{may_fall_back, QueryError, QueryService};
use crate::access::{AccessControl, Principal, TableKey};
use crate::store::AuthedPrincipal;

impl QueryService {
    /// The tables `who` is granted that the engine of their routing
    /// decision lists, sorted. When that engine is an agent that cannot be
    /// reached and the assignment allows `fallback_local`, local compute's
    /// catalog, as a query would fall back.
    pub async fn granted_tables(&self, who: &AuthedPrincipal) -> Result<Vec<TableKey>, QueryError> {
        let deadline = Instant::now() + self.query_timeout;
        let policy = self.policy()?;
        self.resolver.reload_if_changed();
        let decision = self.resolver.resolve(&who.user, &who.groups)?;
        let engine = self.resolver.executor(&decision)?;
        let catalog = match self.catalogs.get(&*engine, deadline).await {
            Ok(c) => c,
            Err(e) if may_fall_back(&decision, &e) => {
                self.catalogs.get(&*self.local, deadline).await?
            }
            Err(e) => return Err(e.into()),
        };
        let principal = Principal {
            user: who.user.clone(),
            groups: who.groups.clone(),
        };
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
