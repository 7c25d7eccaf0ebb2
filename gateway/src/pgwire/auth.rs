//! The PostgreSQL door's startup: TLS first, then the user name and an API
//! token as the password (cleartext, which is why it is taken only inside
//! TLS, or over a plain connection from a loopback address when the
//! operator allows it), checked by the query path's authentication; the
//! principal is bound to the session for every statement after.
//!
//! SCRAM is not offered: the store keeps each token's SHA-256, not the
//! salted verifier SCRAM needs, and a user may hold several tokens while
//! SCRAM must pick one salt before the client proves anything. Inside TLS a
//! cleartext token is as safe as the HTTP API's bearer token.
//!
//! Owns the cancel keys: each authenticated connection is registered under
//! its (pid, secret) so a `CancelRequest` on another connection stops its
//! running statement. It never logs a password.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use futures::Sink;
use pgwire::api::auth::cleartext::CleartextPasswordAuth;
use pgwire::api::auth::driver::AuthOutcome;
use pgwire::api::auth::mechanism::AuthMechanismFactory;
use pgwire::api::auth::{
    AuthDriver, AuthSource, DefaultServerParameterProvider, LoginInfo, Password, StartupHandler,
};
use pgwire::api::ClientInfo;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use tokio::sync::watch;

use crate::query::QueryService;
use crate::store::AuthedPrincipal;

/// The session's authenticated principal (a session extension).
pub(super) struct Session {
    pub principal: AuthedPrincipal,
    /// Bumped by a `CancelRequest` for this connection.
    pub cancel: watch::Receiver<u64>,
    /// Unregisters the connection's cancel key when the session ends.
    _registration: Registration,
}

/// A connection's cancel key: its process id and secret, as the client got them.
type CancelKey = (i32, Vec<u8>);

/// Connections' cancel keys.
#[derive(Default)]
pub(super) struct Cancels {
    by_key: Mutex<HashMap<CancelKey, watch::Sender<u64>>>,
}

impl Cancels {
    fn register(
        self: &Arc<Self>,
        pid: i32,
        secret: Vec<u8>,
    ) -> (watch::Receiver<u64>, Registration) {
        let (tx, rx) = watch::channel(0u64);
        self.by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((pid, secret.clone()), tx);
        (
            rx,
            Registration {
                cancels: self.clone(),
                key: (pid, secret),
            },
        )
    }

    /// Cancels the statement running on the connection of this key, if any.
    pub(super) fn cancel(&self, pid: i32, secret: &[u8]) {
        if let Some(tx) = self
            .by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&(pid, secret.to_vec()))
        {
            tx.send_modify(|n| *n += 1);
        }
    }
}

pub(super) struct Registration {
    cancels: Arc<Cancels>,
    key: CancelKey,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.cancels
            .by_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&self.key);
    }
}

/// Checks a user name and token against the store.
struct Tokens {
    query: Arc<QueryService>,
}

impl Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens")
    }
}

#[async_trait]
impl AuthSource<AuthedPrincipal> for Tokens {
    async fn get_password(&self, _login: &LoginInfo) -> PgWireResult<Password> {
        // Only `verify_password` is used: tokens are kept as hashes.
        Err(PgWireError::ApiError(
            "the gateway cannot hand out a password".into(),
        ))
    }

    async fn verify_password(
        &self,
        login: &LoginInfo,
        presented: &[u8],
    ) -> PgWireResult<Option<AuthedPrincipal>> {
        let user = login.user().unwrap_or_default();
        let token = std::str::from_utf8(presented).unwrap_or("");
        self.query
            .authenticate_user(user, token)
            .map(Some)
            .map_err(|_| PgWireError::InvalidPassword(user.to_string()))
    }
}

/// The startup handler: see the module doc.
pub(super) struct Startup {
    driver: AuthDriver<DefaultServerParameterProvider, AuthedPrincipal>,
    cleartext: CleartextPasswordAuth<Tokens>,
    plain_loopback: bool,
    cancels: Arc<Cancels>,
}

impl Startup {
    pub(super) fn new(
        query: Arc<QueryService>,
        plain_loopback: bool,
        cancels: Arc<Cancels>,
    ) -> Startup {
        let mut params = DefaultServerParameterProvider::default();
        params.server_version = super::SERVER_VERSION.into();
        params.time_zone = "UTC".into();
        Startup {
            driver: AuthDriver::new(params),
            cleartext: CleartextPasswordAuth::new(Arc::new(Tokens { query })),
            plain_loopback,
            cancels,
        }
    }
}

fn refuse(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                pgwire::api::auth::protocol_negotiation(client, startup).await?;
                pgwire::api::auth::save_startup_parameters_to_metadata(client, startup);
                let loopback = client.socket_addr().ip().is_loopback();
                let allowed_plain = self.plain_loopback && loopback;
                if !(client.is_secure() || allowed_plain) {
                    // 28000 invalid_authorization_specification: the password
                    // would cross the network in clear.
                    return Err(refuse(
                        "28000",
                        "the gateway takes a token only over TLS: connect with sslmode=require",
                    ));
                }
                self.driver
                    .begin_authentication(client, self.cleartext.create())
                    .await?;
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(m) => {
                match self.driver.advance_authentication(client, m).await {
                    Ok(AuthOutcome::Authenticated {
                        identity: Some(principal),
                        final_message,
                    }) => {
                        self.driver
                            .complete_authentication(client, final_message)
                            .await?;
                        let (pid, secret) = client.pid_and_secret_key();
                        let (cancel, registration) =
                            self.cancels.register(pid, secret.to_bytes().to_vec());
                        client.session_extensions().insert(Session {
                            principal,
                            cancel,
                            _registration: registration,
                        });
                        Ok(())
                    }
                    Ok(AuthOutcome::Authenticated { identity: None, .. }) => {
                        Err(refuse("28P01", "password authentication failed"))
                    }
                    Ok(AuthOutcome::InProgress) => Ok(()),
                    Err(PgWireError::InvalidPassword(user)) => Err(refuse(
                        "28P01",
                        format!("password authentication failed for user \"{user}\""),
                    )),
                    Err(e) => Err(e),
                }
            }
            _ => Ok(()),
        }
    }
}
