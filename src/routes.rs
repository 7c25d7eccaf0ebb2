//! The route table: method + path to a [`Route`], or 404 / 405 with the `Allow` list.
//!
//! Owns only matching (no auth, no I/O). `FEATURE_CURSOR_MODE=false` removes the
//! `/queries` family entirely so gateways see 404 and fall back to `/execute`.
//! `HEAD` matches wherever `GET` does (net sends the head of the GET answer).

/// A matched route; query ids are borrowed from the request path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route<'a> {
    Execute,
    Submit,
    Status(&'a str),
    Results(&'a str),
    Cancel(&'a str),
    Delete(&'a str),
    Health,
    Metrics,
    /// `GET|PATCH /admin/settings`: the settings that change at run time.
    Settings,
}

/// Why no route matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unmatched {
    /// 404 NOT_FOUND.
    NotFound,
    /// 405 with this `Allow` header value.
    MethodNotAllowed { allow: &'static str },
}

/// Route names used as metric labels; `Unmatched` covers 404/405 answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteKind {
    Execute,
    Submit,
    Status,
    Results,
    Cancel,
    Delete,
    Health,
    Metrics,
    Settings,
    Unmatched,
}

impl RouteKind {
    pub const ALL: [RouteKind; 10] = [
        RouteKind::Execute,
        RouteKind::Submit,
        RouteKind::Status,
        RouteKind::Results,
        RouteKind::Cancel,
        RouteKind::Delete,
        RouteKind::Health,
        RouteKind::Metrics,
        RouteKind::Settings,
        RouteKind::Unmatched,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    /// The label in /metrics: method and path template.
    pub fn label(self) -> &'static str {
        match self {
            RouteKind::Execute => "POST /execute",
            RouteKind::Submit => "POST /queries",
            RouteKind::Status => "GET /queries/{id}",
            RouteKind::Results => "GET /queries/{id}/results",
            RouteKind::Cancel => "POST /queries/{id}/cancel",
            RouteKind::Delete => "DELETE /queries/{id}",
            RouteKind::Health => "GET /health",
            RouteKind::Metrics => "GET /metrics",
            RouteKind::Settings => "/admin/settings",
            RouteKind::Unmatched => "unmatched",
        }
    }
}

impl Route<'_> {
    pub fn kind(&self) -> RouteKind {
        match self {
            Route::Execute => RouteKind::Execute,
            Route::Submit => RouteKind::Submit,
            Route::Status(_) => RouteKind::Status,
            Route::Results(_) => RouteKind::Results,
            Route::Cancel(_) => RouteKind::Cancel,
            Route::Delete(_) => RouteKind::Delete,
            Route::Health => RouteKind::Health,
            Route::Metrics => RouteKind::Metrics,
            Route::Settings => RouteKind::Settings,
        }
    }

    /// Whether the route needs `X-Agent-Token` (all but the scrape endpoints).
    pub fn needs_auth(&self) -> bool {
        !matches!(self, Route::Health | Route::Metrics)
    }
}

/// Matches a request. `path` excludes the query string.
pub fn resolve<'a>(method: &str, path: &'a str, cursor_mode: bool) -> Result<Route<'a>, Unmatched> {
    use Unmatched::*;
    let post = |route: Route<'a>| {
        if method == "POST" {
            Ok(route)
        } else {
            Err(MethodNotAllowed { allow: "POST" })
        }
    };
    let get = |route: Route<'a>| {
        if method == "GET" || method == "HEAD" {
            Ok(route)
        } else {
            Err(MethodNotAllowed { allow: "GET, HEAD" })
        }
    };
    match path {
        "/execute" => return post(Route::Execute),
        "/health" => return get(Route::Health),
        "/metrics" => return get(Route::Metrics),
        "/admin/settings" => {
            return match method {
                "GET" | "HEAD" | "PATCH" => Ok(Route::Settings),
                _ => Err(MethodNotAllowed {
                    allow: "GET, HEAD, PATCH",
                }),
            }
        }
        _ => {}
    }
    let Some(rest) = path.strip_prefix("/queries") else {
        return Err(NotFound);
    };
    if !cursor_mode {
        return Err(NotFound);
    }
    if rest.is_empty() {
        return post(Route::Submit);
    }
    let Some(rest) = rest.strip_prefix('/') else {
        return Err(NotFound);
    };
    let (id, tail) = match rest.split_once('/') {
        Some((id, tail)) => (id, Some(tail)),
        None => (rest, None),
    };
    if id.is_empty() {
        return Err(NotFound);
    }
    match tail {
        None => match method {
            "GET" | "HEAD" => Ok(Route::Status(id)),
            "DELETE" => Ok(Route::Delete(id)),
            _ => Err(MethodNotAllowed {
                allow: "GET, HEAD, DELETE",
            }),
        },
        Some("results") => get(Route::Results(id)),
        Some("cancel") => post(Route::Cancel(id)),
        Some(_) => Err(NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert_eq!(resolve("POST", "/execute", true), Ok(Route::Execute));
        assert_eq!(resolve("POST", "/queries", true), Ok(Route::Submit));
        assert_eq!(
            resolve("GET", "/queries/abc", true),
            Ok(Route::Status("abc"))
        );
        assert_eq!(
            resolve("DELETE", "/queries/abc", true),
            Ok(Route::Delete("abc"))
        );
        assert_eq!(
            resolve("GET", "/queries/abc/results", true),
            Ok(Route::Results("abc"))
        );
        assert_eq!(
            resolve("POST", "/queries/abc/cancel", true),
            Ok(Route::Cancel("abc"))
        );
        assert_eq!(resolve("GET", "/health", true), Ok(Route::Health));
        assert_eq!(resolve("GET", "/metrics", false), Ok(Route::Metrics));
        assert_eq!(resolve("HEAD", "/health", true), Ok(Route::Health));
        assert_eq!(resolve("HEAD", "/metrics", true), Ok(Route::Metrics));
        assert_eq!(
            resolve("HEAD", "/queries/abc", true),
            Ok(Route::Status("abc"))
        );
        assert_eq!(
            resolve("HEAD", "/queries/abc/results", true),
            Ok(Route::Results("abc"))
        );
    }

    #[test]
    fn misses() {
        let nf = Err(Unmatched::NotFound);
        for p in [
            "/",
            "/nope",
            "/queries/",
            "/queries//results",
            "/queries/a/b",
            "/queriesx",
            "/execute/",
        ] {
            assert_eq!(resolve("GET", p, true), nf, "{p}");
        }
        assert_eq!(
            resolve("GET", "/execute", true),
            Err(Unmatched::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(
            resolve("PUT", "/queries/a", true),
            Err(Unmatched::MethodNotAllowed {
                allow: "GET, HEAD, DELETE"
            })
        );
        assert_eq!(
            resolve("POST", "/health", true),
            Err(Unmatched::MethodNotAllowed { allow: "GET, HEAD" })
        );
        assert_eq!(
            resolve("HEAD", "/execute", true),
            Err(Unmatched::MethodNotAllowed { allow: "POST" })
        );
        assert_eq!(resolve("POST", "/queries", false), nf);
        assert_eq!(resolve("GET", "/queries/a", false), nf);
    }
}
