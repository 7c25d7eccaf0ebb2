//! [`Snapshot`]: everything routing and policy need, as of one revision,
//! read in one transaction, and the reads it is made of.
//!
//! Owns the conversion of stored rows into the policy ([`Policy`]), the
//! resolver's configuration ([`ResolverConfig`]) and principals. A snapshot
//! is immutable and shared as `Arc<Snapshot>`; it never talks to the
//! database after it is built. The `select_*` functions here are the only
//! place that turns the store's table rows into row types.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};

use client::resolver::{
    Assignment, ConfigError, Endpoint, EndpointKind, Principal as RoutePrincipal, ResolverConfig,
    RolloutDefaults,
};

use super::db::{Conn, Val};
use super::model::*;
use super::{rfc3339, StoreError};
use crate::policy::{Policy, PolicyError, Principal};

/// The routing and policy state at one revision.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Bumped by every write; a snapshot with a higher one is newer.
    pub revision: i64,
    /// By name; with their tokens (routing needs them).
    pub endpoints: Vec<StoredEndpoint>,
    /// By id.
    pub assignments: Vec<AssignmentRow>,
    /// By name, with their groups.
    pub users: BTreeMap<String, UserRow>,
    pub grants: Vec<GrantRow>,
    pub row_filters: Vec<RowFilterRow>,
    pub column_masks: Vec<ColumnMaskRow>,
    /// SHA-256 (hex) of each API token → its user.
    pub(crate) tokens: HashMap<String, String>,
    /// [`Snapshot::shared_policy`]'s result, built on first use.
    policy_cache: OnceLock<(String, Arc<Policy>)>,
}

impl Snapshot {
    /// Reads the whole state; call inside a read transaction.
    pub(crate) fn load(c: &mut dyn Conn) -> Result<Snapshot, StoreError> {
        let revision = read_revision(c)?;
        let endpoints = select_endpoints(c, None)?;
        let assignments = select_assignments(c, None)?;
        let users = select_users(c)?
            .into_iter()
            .map(|u| (u.name.clone(), u))
            .collect();
        let tokens = c
            .query("SELECT sha256, user_name FROM gw_tokens", &[])?
            .into_iter()
            .map(|r| {
                let mut r = r.into_iter();
                Ok((next(&mut r)?.text()?, next(&mut r)?.text()?))
            })
            .collect::<Result<_, StoreError>>()?;
        Ok(Snapshot {
            revision,
            endpoints,
            assignments,
            users,
            grants: select_grants(c)?,
            row_filters: select_row_filters(c)?,
            column_masks: select_column_masks(c)?,
            tokens,
            policy_cache: OnceLock::new(),
        })
    }

    pub fn endpoint(&self, name: &str) -> Option<&StoredEndpoint> {
        self.endpoints.iter().find(|e| e.row.name == name)
    }

    /// The user (any case) and its groups; `None` for an unknown user.
    pub fn principal(&self, user: &str) -> Option<Principal> {
        let u = self.users.get(&user.to_ascii_lowercase())?;
        Some(Principal {
            user: u.name.clone(),
            groups: u.groups.clone(),
        })
    }

    /// Whether `user` is a known administrator.
    pub fn is_admin(&self, user: &str) -> bool {
        self.users
            .get(&user.to_ascii_lowercase())
            .is_some_and(|u| u.is_admin)
    }

    /// Who holds the API token whose SHA-256 (hex) is `sha256`.
    pub fn token_owner(&self, sha256: &str) -> Option<AuthedPrincipal> {
        let user = self.tokens.get(sha256)?;
        let u = self.users.get(user)?;
        Some(AuthedPrincipal {
            user: u.name.clone(),
            groups: u.groups.clone(),
            is_admin: u.is_admin,
        })
    }

    /// The policy: every grant, filter and mask. `default_catalog` is the
    /// engine's database name (DuckDB: `memory` for an in-memory one).
    pub fn policy(&self, default_catalog: &str) -> Result<Policy, PolicyError> {
        let mut p = Policy::new(default_catalog);
        for g in &self.grants {
            let to = g.principal_type.grantee(&g.principal);
            match (&g.table, &g.schema) {
                (Some(t), _) => p.grant_table(to, t)?,
                (None, Some(s)) => p.grant_schema(to, s)?,
                (None, None) => return Err(PolicyError::BadName(String::new())),
            }
        }
        for f in &self.row_filters {
            p.add_row_filter(
                f.principal_type.grantee(&f.principal),
                &f.table,
                &f.predicate,
            )?;
        }
        for m in &self.column_masks {
            p.add_column_mask(
                m.principal_type.grantee(&m.principal),
                &m.table,
                &m.column,
                &m.expression,
            )?;
        }
        Ok(p)
    }

    /// [`Self::policy`], built once per snapshot and shared: what the query
    /// path should call (building parses every filter and mask again).
    pub fn shared_policy(&self, default_catalog: &str) -> Result<Arc<Policy>, PolicyError> {
        if let Some((catalog, p)) = self.policy_cache.get() {
            if catalog == default_catalog {
                return Ok(p.clone());
            }
        }
        let p = Arc::new(self.policy(default_catalog)?);
        let _ = self
            .policy_cache
            .set((default_catalog.to_string(), p.clone()));
        Ok(p)
    }

    /// The resolver's configuration: the stored endpoints and assignments;
    /// health probing and client settings at the defaults a TOML file without
    /// those sections gets; rollout from `defaults`.
    pub fn resolver_config(
        &self,
        defaults: &RolloutDefaults,
    ) -> Result<ResolverConfig, ConfigError> {
        let describe = format!("gateway store (revision {})", self.revision);
        // The empty file: the one place the health and client defaults live.
        let mut cfg = client::resolver::config::parse("", &describe, defaults)?;
        let invalid = |message: String| ConfigError::Invalid {
            path: describe.clone(),
            message,
        };
        for e in &self.endpoints {
            let r = &e.row;
            // Stored endpoints were checked at write time; check again, as the
            // file path does, so a bad row can never reach a client.
            endpoint(&r.name, &r.url, r.kind, &e.auth_token).map_err(|x| invalid(x.to_string()))?;
            cfg.endpoints.push(Endpoint {
                name: r.name.clone(),
                url: r.url.clone(),
                token: e.auth_token.clone(),
                kind: match r.kind {
                    EndpointType::Local => EndpointKind::Local,
                    EndpointType::Remote => EndpointKind::Remote,
                },
                status: match r.status {
                    EndpointStatus::Active => client::resolver::EndpointStatus::Active,
                    EndpointStatus::Inactive => client::resolver::EndpointStatus::Inactive,
                },
            });
        }
        for a in &self.assignments {
            if self.endpoint(&a.endpoint).is_none() {
                return Err(invalid(format!(
                    "assignment {} names unknown endpoint {:?}",
                    a.id, a.endpoint
                )));
            }
            cfg.assignments.push(Assignment {
                principal: match a.principal_type {
                    PrincipalType::User => RoutePrincipal::User(a.principal.clone()),
                    PrincipalType::Group => RoutePrincipal::Group(a.principal.clone()),
                },
                endpoint: a.endpoint.clone(),
                is_default: a.is_default,
                fallback_local: a.fallback_local,
            });
        }
        Ok(cfg)
    }
}

// ------------------------------------------------------------------ reads

fn next(r: &mut impl Iterator<Item = Val>) -> Result<Val, StoreError> {
    r.next()
        .ok_or_else(|| StoreError::Corrupt("a row is missing a column".into()))
}

pub(crate) fn read_revision(c: &mut dyn Conn) -> Result<i64, StoreError> {
    let rows = c.query("SELECT revision FROM gw_revision WHERE id = 1", &[])?;
    rows.into_iter()
        .next()
        .and_then(|r| r.into_iter().next())
        .ok_or_else(|| StoreError::Corrupt("gw_revision has no row".into()))?
        .int()
}

/// Endpoints (all, or the one named), with tokens, by name.
pub(crate) fn select_endpoints(
    c: &mut dyn Conn,
    name: Option<&str>,
) -> Result<Vec<StoredEndpoint>, StoreError> {
    const ALL: &str = "SELECT name, url, kind, status, auth_token, created_at, updated_at \
                       FROM gw_endpoints";
    let rows = match name {
        None => c.query(&format!("{ALL} ORDER BY name"), &[])?,
        Some(n) => c.query(&format!("{ALL} WHERE name = $1"), &[n.into()])?,
    };
    rows.into_iter()
        .map(|r| {
            let mut r = r.into_iter();
            let name = next(&mut r)?.text()?;
            let url = next(&mut r)?.text()?;
            let kind = EndpointType::parse(&next(&mut r)?.text()?)?;
            let status = EndpointStatus::parse(&next(&mut r)?.text()?)?;
            let auth_token = next(&mut r)?.text()?;
            let created_at = rfc3339(next(&mut r)?.int()?);
            let updated_at = rfc3339(next(&mut r)?.int()?);
            Ok(StoredEndpoint {
                row: EndpointRow {
                    name,
                    url,
                    kind,
                    status,
                    has_auth_token: !auth_token.is_empty(),
                    created_at,
                    updated_at,
                },
                auth_token,
            })
        })
        .collect()
}

/// Assignments (all, or one endpoint's), by id.
pub(crate) fn select_assignments(
    c: &mut dyn Conn,
    endpoint: Option<&str>,
) -> Result<Vec<AssignmentRow>, StoreError> {
    const ALL: &str = "SELECT id, endpoint, principal, principal_type, is_default, \
                       fallback_local, created_at FROM gw_assignments";
    let rows = match endpoint {
        None => c.query(&format!("{ALL} ORDER BY id"), &[])?,
        Some(e) => c.query(
            &format!("{ALL} WHERE endpoint = $1 ORDER BY id"),
            &[e.into()],
        )?,
    };
    rows.into_iter().map(assignment_row).collect()
}

pub(crate) fn assignment_row(r: Vec<Val>) -> Result<AssignmentRow, StoreError> {
    let mut r = r.into_iter();
    Ok(AssignmentRow {
        id: next(&mut r)?.int()?,
        endpoint: next(&mut r)?.text()?,
        principal: next(&mut r)?.text()?,
        principal_type: PrincipalType::parse(&next(&mut r)?.text()?)?,
        is_default: next(&mut r)?.boolean()?,
        fallback_local: next(&mut r)?.boolean()?,
        created_at: rfc3339(next(&mut r)?.int()?),
    })
}

/// Users with their groups, by name.
pub(crate) fn select_users(c: &mut dyn Conn) -> Result<Vec<UserRow>, StoreError> {
    let mut users: BTreeMap<String, UserRow> = BTreeMap::new();
    for r in c.query("SELECT name, is_admin, created_at FROM gw_users", &[])? {
        let mut r = r.into_iter();
        let name = next(&mut r)?.text()?;
        users.insert(
            name.clone(),
            UserRow {
                name,
                is_admin: next(&mut r)?.boolean()?,
                groups: Vec::new(),
                created_at: rfc3339(next(&mut r)?.int()?),
            },
        );
    }
    for r in c.query(
        "SELECT group_name, user_name FROM gw_group_members ORDER BY group_name",
        &[],
    )? {
        let mut r = r.into_iter();
        let group = next(&mut r)?.text()?;
        let user = next(&mut r)?.text()?;
        if let Some(u) = users.get_mut(&user) {
            u.groups.push(group);
        }
    }
    Ok(users.into_values().collect())
}

/// Groups with their members, by name.
pub(crate) fn select_groups(c: &mut dyn Conn) -> Result<Vec<GroupRow>, StoreError> {
    let mut groups: BTreeMap<String, GroupRow> = BTreeMap::new();
    for r in c.query(
        "SELECT group_name, user_name FROM gw_group_members ORDER BY group_name, user_name",
        &[],
    )? {
        let mut r = r.into_iter();
        let name = next(&mut r)?.text()?;
        let user = next(&mut r)?.text()?;
        groups
            .entry(name.clone())
            .or_insert_with(|| GroupRow {
                name,
                members: Vec::new(),
            })
            .members
            .push(user);
    }
    Ok(groups.into_values().collect())
}

pub(crate) fn grant_row(r: Vec<Val>) -> Result<GrantRow, StoreError> {
    let mut r = r.into_iter();
    let id = next(&mut r)?.int()?;
    let principal = next(&mut r)?.text()?;
    let principal_type = PrincipalType::parse(&next(&mut r)?.text()?)?;
    let target_type = next(&mut r)?.text()?;
    let target = next(&mut r)?.text()?;
    let (table, schema) = match target_type.as_str() {
        "table" => (Some(target), None),
        "schema" => (None, Some(target)),
        other => return Err(StoreError::Corrupt(format!("grant target type {other:?}"))),
    };
    Ok(GrantRow {
        id,
        principal,
        principal_type,
        table,
        schema,
        created_at: rfc3339(next(&mut r)?.int()?),
    })
}

pub(crate) const GRANT_COLUMNS: &str =
    "id, principal, principal_type, target_type, target, created_at";

pub(crate) fn select_grants(c: &mut dyn Conn) -> Result<Vec<GrantRow>, StoreError> {
    c.query(
        &format!("SELECT {GRANT_COLUMNS} FROM gw_grants ORDER BY id"),
        &[],
    )?
    .into_iter()
    .map(grant_row)
    .collect()
}

pub(crate) const FILTER_COLUMNS: &str =
    "id, principal, principal_type, table_name, predicate, created_at";

pub(crate) fn row_filter_row(r: Vec<Val>) -> Result<RowFilterRow, StoreError> {
    let mut r = r.into_iter();
    Ok(RowFilterRow {
        id: next(&mut r)?.int()?,
        principal: next(&mut r)?.text()?,
        principal_type: PrincipalType::parse(&next(&mut r)?.text()?)?,
        table: next(&mut r)?.text()?,
        predicate: next(&mut r)?.text()?,
        created_at: rfc3339(next(&mut r)?.int()?),
    })
}

pub(crate) fn select_row_filters(c: &mut dyn Conn) -> Result<Vec<RowFilterRow>, StoreError> {
    c.query(
        &format!("SELECT {FILTER_COLUMNS} FROM gw_row_filters ORDER BY id"),
        &[],
    )?
    .into_iter()
    .map(row_filter_row)
    .collect()
}

pub(crate) const MASK_COLUMNS: &str =
    "id, principal, principal_type, table_name, column_name, expression, created_at";

pub(crate) fn column_mask_row(r: Vec<Val>) -> Result<ColumnMaskRow, StoreError> {
    let mut r = r.into_iter();
    Ok(ColumnMaskRow {
        id: next(&mut r)?.int()?,
        principal: next(&mut r)?.text()?,
        principal_type: PrincipalType::parse(&next(&mut r)?.text()?)?,
        table: next(&mut r)?.text()?,
        column: next(&mut r)?.text()?,
        expression: next(&mut r)?.text()?,
        created_at: rfc3339(next(&mut r)?.int()?),
    })
}

pub(crate) fn select_column_masks(c: &mut dyn Conn) -> Result<Vec<ColumnMaskRow>, StoreError> {
    c.query(
        &format!("SELECT {MASK_COLUMNS} FROM gw_column_masks ORDER BY id"),
        &[],
    )?
    .into_iter()
    .map(column_mask_row)
    .collect()
}
