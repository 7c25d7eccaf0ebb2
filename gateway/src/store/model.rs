//! The store's row types (what the admin API reads and writes) and the
//! validation every write goes through before it reaches the database.
//!
//! Owns the field names of the admin API's JSON (`name`, `url`, `type`,
//! `status`, `auth_token`, `principal`, `principal_type`, `is_default`,
//! `fallback_local`, `id`), the size bounds, and the naming rules. It must
//! never let an endpoint's `auth_token` into a serializable row (rows carry
//! `has_auth_token`), nor accept a filter or mask the rewriter would refuse
//! (they are parsed here with `gateway::policy`, as the rewriter parses them).

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::policy::{Grantee, Policy};

/// Longest user, group, endpoint or column name.
pub const MAX_NAME_BYTES: usize = 128;
/// Longest table name (`catalog.schema.table`).
pub const MAX_TABLE_BYTES: usize = 3 * MAX_NAME_BYTES + 2;
/// Longest row filter predicate or column mask expression. Small enough that
/// the uniqueness index on filters stays within PostgreSQL's b-tree limit.
pub const MAX_EXPR_BYTES: usize = 2000;
/// Longest endpoint URL.
pub const MAX_URL_BYTES: usize = 2048;
/// Longest endpoint auth token or API token.
pub const MAX_TOKEN_BYTES: usize = 4096;
/// Shortest API token accepted (a guessable token is refused).
pub const MIN_API_TOKEN_BYTES: usize = 8;

/// Where an endpoint's queries run (`type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EndpointType {
    Local,
    Remote,
}

impl EndpointType {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointType::Local => "LOCAL",
            EndpointType::Remote => "REMOTE",
        }
    }
    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "LOCAL" => Ok(EndpointType::Local),
            "REMOTE" => Ok(EndpointType::Remote),
            _ => Err(StoreError::Corrupt(format!("endpoint type {s:?}"))),
        }
    }
}

/// An operator's switch on an endpoint (`status`), as the resolver knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EndpointStatus {
    Active,
    Inactive,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Active => "ACTIVE",
            EndpointStatus::Inactive => "INACTIVE",
        }
    }
    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "ACTIVE" => Ok(EndpointStatus::Active),
            "INACTIVE" => Ok(EndpointStatus::Inactive),
            _ => Err(StoreError::Corrupt(format!("endpoint status {s:?}"))),
        }
    }
}

/// Whether a principal name is a user's or a group's (`principal_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PrincipalType {
    User,
    Group,
}

impl PrincipalType {
    pub fn as_str(self) -> &'static str {
        match self {
            PrincipalType::User => "user",
            PrincipalType::Group => "group",
        }
    }
    pub(crate) fn parse(s: &str) -> Result<Self, StoreError> {
        match s {
            "user" => Ok(PrincipalType::User),
            "group" => Ok(PrincipalType::Group),
            _ => Err(StoreError::Corrupt(format!("principal type {s:?}"))),
        }
    }
    pub(crate) fn grantee(self, name: &str) -> Grantee {
        match self {
            PrincipalType::User => Grantee::user(name),
            PrincipalType::Group => Grantee::group(name),
        }
    }
}

fn active() -> EndpointStatus {
    EndpointStatus::Active
}

/// An endpoint as the admin API shows it: never its token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EndpointRow {
    pub name: String,
    pub url: String,
    #[serde(rename = "type")]
    pub kind: EndpointType,
    pub status: EndpointStatus,
    pub has_auth_token: bool,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub updated_at: String,
}

/// A new endpoint (`POST /compute-endpoints`).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewEndpoint {
    pub name: String,
    #[serde(default)]
    pub url: String,
    #[serde(rename = "type")]
    pub kind: EndpointType,
    #[serde(default = "active")]
    pub status: EndpointStatus,
    /// Write-only. Required for REMOTE endpoints.
    #[serde(default)]
    pub auth_token: Option<String>,
}

impl std::fmt::Debug for NewEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewEndpoint")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// A change to an endpoint (`PATCH /compute-endpoints/{name}`): absent fields
/// stay. `name` may be given but must be the endpoint's own (no renames).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EndpointPatch {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<EndpointType>,
    #[serde(default)]
    pub status: Option<EndpointStatus>,
    #[serde(default)]
    pub auth_token: Option<String>,
}

impl std::fmt::Debug for EndpointPatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EndpointPatch")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("kind", &self.kind)
            .field("status", &self.status)
            .field(
                "auth_token",
                &self.auth_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// An endpoint with its token: only in a [`super::Snapshot`], for routing.
/// Deliberately not `Serialize`.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredEndpoint {
    pub row: EndpointRow,
    pub(crate) auth_token: String,
}

impl StoredEndpoint {
    /// The token the gateway presents to the agent.
    pub fn auth_token(&self) -> &str {
        &self.auth_token
    }
}

impl std::fmt::Debug for StoredEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredEndpoint")
            .field("row", &self.row)
            .field("auth_token", &"<redacted>")
            .finish()
    }
}

/// An assignment of a user or group to an endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AssignmentRow {
    pub id: i64,
    pub endpoint: String,
    pub principal: String,
    pub principal_type: PrincipalType,
    pub is_default: bool,
    pub fallback_local: bool,
    pub created_at: String,
}

/// A new assignment (`POST /compute-endpoints/{name}/assignments`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAssignment {
    pub principal: String,
    pub principal_type: PrincipalType,
    #[serde(default)]
    pub is_default: bool,
    #[serde(default)]
    pub fallback_local: bool,
}

/// A user and the groups it is in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UserRow {
    pub name: String,
    pub is_admin: bool,
    pub groups: Vec<String>,
    pub created_at: String,
}

/// A group and its members (a group exists while it has members; grants,
/// filters, masks and assignments may name a group before it has any).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupRow {
    pub name: String,
    pub members: Vec<String>,
}

/// An API token, as listed: never the token, only the first 12 hex digits of
/// its SHA-256 (enough to tell tokens apart in a listing or a log).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TokenRow {
    pub user: String,
    pub fingerprint: String,
    pub created_at: String,
}

/// Who a bearer token belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuthedPrincipal {
    pub user: String,
    pub groups: Vec<String>,
    pub is_admin: bool,
}

impl AuthedPrincipal {
    /// The policy's view of this principal.
    pub fn policy_principal(&self) -> crate::policy::Principal {
        crate::policy::Principal {
            user: self.user.clone(),
            groups: self.groups.clone(),
        }
    }
}

/// A grant of SELECT on one table or on every table of a schema; exactly one
/// of `table` and `schema` is set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GrantRow {
    pub id: i64,
    pub principal: String,
    pub principal_type: PrincipalType,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema: Option<String>,
    pub created_at: String,
}

/// A new grant: exactly one of `table` (`[catalog.][schema.]table`) and
/// `schema` (`[catalog.]schema`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewGrant {
    pub principal: String,
    pub principal_type: PrincipalType,
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub schema: Option<String>,
}

/// A row filter: a SQL predicate over the table's own columns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RowFilterRow {
    pub id: i64,
    pub principal: String,
    pub principal_type: PrincipalType,
    pub table: String,
    pub predicate: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRowFilter {
    pub principal: String,
    pub principal_type: PrincipalType,
    pub table: String,
    pub predicate: String,
}

/// A column mask: a SQL expression whose value replaces the column's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ColumnMaskRow {
    pub id: i64,
    pub principal: String,
    pub principal_type: PrincipalType,
    pub table: String,
    pub column: String,
    pub expression: String,
    pub created_at: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewColumnMask {
    pub principal: String,
    pub principal_type: PrincipalType,
    pub table: String,
    pub column: String,
    pub expression: String,
}

// ------------------------------------------------------------ validation

fn invalid(field: &'static str, reason: impl Into<String>) -> StoreError {
    StoreError::Invalid {
        field,
        reason: reason.into(),
    }
}

fn bounded(field: &'static str, s: &str, max: usize) -> Result<(), StoreError> {
    if s.len() > max {
        return Err(invalid(field, format!("longer than {max} bytes")));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(field, "holds a control character"));
    }
    Ok(())
}

/// A user or group name: 1 to 128 of `A-Z a-z 0-9 _ - . @ +`, stored
/// lower-case (the policy compares names case-insensitively).
pub fn principal_name(field: &'static str, s: &str) -> Result<String, StoreError> {
    bounded(field, s, MAX_NAME_BYTES)?;
    if s.is_empty() {
        return Err(invalid(field, "empty"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.@+".contains(*c)))
    {
        return Err(invalid(
            field,
            format!("{c:?} is not allowed (letters, digits, _ - . @ +)"),
        ));
    }
    Ok(s.to_ascii_lowercase())
}

/// An endpoint name: 1 to 128 of `A-Z a-z 0-9 _ - .` (it appears in URL
/// paths), case kept.
pub fn endpoint_name(s: &str) -> Result<String, StoreError> {
    bounded("name", s, MAX_NAME_BYTES)?;
    if s.is_empty() {
        return Err(invalid("name", "empty"));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-.".contains(*c)))
    {
        return Err(invalid(
            "name",
            format!("{c:?} is not allowed (letters, digits, _ - .)"),
        ));
    }
    Ok(s.to_string())
}

/// A table, schema or column name part: no quotes, semicolons or control
/// characters, at most 128 bytes.
fn name_parts(field: &'static str, s: &str, max_parts: usize) -> Result<String, StoreError> {
    bounded(field, s, MAX_TABLE_BYTES)?;
    let parts: Vec<&str> = s.split('.').map(str::trim).collect();
    if parts.len() > max_parts || parts.iter().any(|p| p.is_empty()) {
        return Err(invalid(
            field,
            format!("expected at most {max_parts} non-empty dot-separated names"),
        ));
    }
    for p in &parts {
        if p.len() > MAX_NAME_BYTES {
            return Err(invalid(
                field,
                format!("a part is longer than {MAX_NAME_BYTES} bytes"),
            ));
        }
        if let Some(c) = p.chars().find(|c| "\"'`;".contains(*c)) {
            return Err(invalid(field, format!("{c:?} is not allowed in a name")));
        }
    }
    Ok(parts.join(".").to_lowercase())
}

/// `[catalog.][schema.]table`, lower-case.
pub fn table_name(s: &str) -> Result<String, StoreError> {
    let t = name_parts("table", s, 3)?;
    // The policy's own name check, so a stored name always loads.
    Policy::new("memory").key(&t)?;
    Ok(t)
}

/// `[catalog.]schema`, lower-case.
pub fn schema_name(s: &str) -> Result<String, StoreError> {
    let t = name_parts("schema", s, 2)?;
    Policy::new("memory").grant_schema(Grantee::user("x"), &t)?;
    Ok(t)
}

/// A column name, lower-case.
pub fn column_name(s: &str) -> Result<String, StoreError> {
    name_parts("column", s, 1)
}

/// A row filter predicate, parsed as the rewriter will parse it.
pub fn predicate(table: &str, s: &str) -> Result<(), StoreError> {
    bounded("predicate", s, MAX_EXPR_BYTES)?;
    Policy::new("memory").add_row_filter(Grantee::user("x"), table, s)?;
    Ok(())
}

/// A column mask expression, parsed as the rewriter will parse it.
pub fn mask_expression(table: &str, column: &str, s: &str) -> Result<(), StoreError> {
    bounded("expression", s, MAX_EXPR_BYTES)?;
    Policy::new("memory").add_column_mask(Grantee::user("x"), table, column, s)?;
    Ok(())
}

/// An endpoint as it will be stored: checked the way the resolver checks a
/// configuration file, so a stored endpoint never makes the resolver refuse
/// the whole configuration.
pub(crate) fn endpoint(
    name: &str,
    url: &str,
    kind: EndpointType,
    token: &str,
) -> Result<(), StoreError> {
    bounded("url", url, MAX_URL_BYTES)?;
    if token.len() > MAX_TOKEN_BYTES {
        return Err(invalid(
            "auth_token",
            format!("longer than {MAX_TOKEN_BYTES} bytes"),
        ));
    }
    if kind == EndpointType::Remote {
        if token.is_empty() {
            return Err(invalid("auth_token", "required for a REMOTE endpoint"));
        }
        let cfg = client::AgentConfig::new(name, url, token);
        client::AgentClient::check_config(&cfg).map_err(|e| invalid("endpoint", e.to_string()))?;
    }
    Ok(())
}

/// An API token: 8 to 4096 visible ASCII characters.
pub fn api_token(s: &str) -> Result<(), StoreError> {
    if s.len() < MIN_API_TOKEN_BYTES || s.len() > MAX_TOKEN_BYTES {
        return Err(invalid(
            "token",
            format!("must be {MIN_API_TOKEN_BYTES} to {MAX_TOKEN_BYTES} bytes"),
        ));
    }
    if !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid("token", "must be visible ASCII characters"));
    }
    Ok(())
}
