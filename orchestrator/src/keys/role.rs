//! Roles and the table of which role each client endpoint needs.
//!
//! Roles are ordered: `submit` can do everything `read` can (a batch job reads back its
//! results), `admin` everything `submit` can. The table is the one place that decides;
//! an endpoint missing from it needs `admin`, so a new route is closed until someone
//! says otherwise.

use std::fmt;

use axum::http::Method;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    Read,
    Submit,
    Admin,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Read, Role::Submit, Role::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Submit => "submit",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Result<Role, String> {
        match text.trim().to_ascii_lowercase().as_str() {
            "read" => Ok(Role::Read),
            "submit" => Ok(Role::Submit),
            "admin" => Ok(Role::Admin),
            other => Err(format!(
                "unknown role \"{other}\": expected read, submit or admin"
            )),
        }
    }

    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `(method, route as axum matches it, role)`. The README's table is this one.
pub const ROUTES: &[(&str, &str, Role)] = &[
    ("GET", "/health", Role::Read),
    ("GET", "/api/stats", Role::Read),
    ("GET", "/api/tasks/queue", Role::Read),
    ("GET", "/api/tasks/status/{id}", Role::Read),
    ("GET", "/api/workers/list", Role::Read),
    ("GET", "/api/nodes", Role::Read),
    ("GET", "/api/nodes/{id}", Role::Read),
    ("GET", "/metrics", Role::Read),
    ("GET", "/", Role::Read),
    ("GET", "/api/events", Role::Read),
    ("POST", "/api/tasks/submit", Role::Submit),
    // The gateway: OpenAI- and Ollama-compatible routes run models, so they submit.
    ("GET", "/v1/models", Role::Submit),
    ("GET", "/v1/models/{*model}", Role::Submit),
    ("POST", "/v1/chat/completions", Role::Submit),
    ("POST", "/v1/completions", Role::Submit),
    ("POST", "/v1/embeddings", Role::Submit),
    ("POST", "/api/chat", Role::Submit),
    ("POST", "/api/generate", Role::Submit),
    ("POST", "/api/embed", Role::Submit),
    ("POST", "/api/show", Role::Submit),
    ("GET", "/api/tags", Role::Submit),
    ("GET", "/api/ps", Role::Submit),
    ("GET", "/api/version", Role::Submit),
    ("POST", "/api/nodes/{id}/drain", Role::Admin),
    ("POST", "/api/nodes/{id}/undrain", Role::Admin),
    ("POST", "/api/nodes/{id}/forget", Role::Admin),
];

/// The role a client request needs, from its method and matched route.
pub fn needed(method: &Method, route: &str) -> Role {
    ROUTES
        .iter()
        .find(|(m, r, _)| *r == route && method.as_str() == *m)
        .map(|(_, _, role)| *role)
        .unwrap_or(Role::Admin)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Admin.allows(Role::Submit));
        assert!(Role::Submit.allows(Role::Read));
        assert!(!Role::Read.allows(Role::Submit));
        assert!(!Role::Submit.allows(Role::Admin));
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()), Ok(r));
        }
        assert_eq!(Role::parse(" ADMIN "), Ok(Role::Admin));
        assert!(Role::parse("root")
            .unwrap_err()
            .contains("read, submit or admin"));
    }

    #[test]
    fn unknown_routes_need_admin() {
        assert_eq!(needed(&Method::GET, "/api/stats"), Role::Read);
        assert_eq!(needed(&Method::POST, "/api/stats"), Role::Admin);
        assert_eq!(needed(&Method::POST, "/api/tasks/submit"), Role::Submit);
        assert_eq!(needed(&Method::POST, "/api/nodes/{id}/drain"), Role::Admin);
        assert_eq!(needed(&Method::DELETE, "/api/something/new"), Role::Admin);
    }
}
