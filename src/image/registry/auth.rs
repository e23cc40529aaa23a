//! The registry token flow (distribution spec, docker's): `GET /v2/` says how to authenticate
//! (`WWW-Authenticate`); a `Bearer` challenge's realm hands out a pull token for the
//! repository (HTTP Basic with the configured credentials, when there are some); a `Basic`
//! challenge takes the credentials on every request. Done here rather than by oci-client so the
//! token request is bounded like every other (deadline, stall, a capped body).

use std::sync::Mutex;

use http_auth::parser::ChallengeParser;
use oci_client::secrets::RegistryAuth;
use reqwest::header::WWW_AUTHENTICATE;
use reqwest::RequestBuilder;
use serde::Deserialize;

use super::limits::MAX_SMALL_BODY;
use super::transport::{self, Clock, Failure};

/// What goes into each request's `Authorization` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) enum Authorization {
    #[default]
    None,
    Bearer(String),
    Basic(String, String),
}

impl Authorization {
    /// `request` carrying this authorization.
    pub(super) fn apply(&self, request: RequestBuilder) -> RequestBuilder {
        match self {
            Authorization::None => request,
            Authorization::Bearer(token) => request.bearer_auth(token),
            Authorization::Basic(user, password) => request.basic_auth(user, Some(password)),
        }
    }
}

/// The credentials of one pull and the authorization they currently give.
pub(super) struct Auth {
    credentials: RegistryAuth,
    /// The authorization, and when it expires (Unix seconds: a JWT token's `exp`).
    current: Mutex<(Authorization, Option<u64>)>,
}

/// The claim of a JWT token we read: when it expires.
#[derive(Deserialize)]
struct Claims {
    #[serde(default)]
    exp: Option<u64>,
}

/// A token realm's answer (`token`, or the OAuth2 spelling `access_token`).
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
}

/// Where and for what to ask a token.
#[derive(Debug, PartialEq, Eq)]
struct Challenge {
    realm: String,
    service: Option<String>,
}

impl Auth {
    pub(super) fn new(credentials: RegistryAuth) -> Auth {
        Auth {
            credentials,
            current: Mutex::new((Authorization::None, None)),
        }
    }

    /// The authorization to send now.
    pub(super) fn current(&self) -> Authorization {
        self.current.lock().map(|a| a.0.clone()).unwrap_or_default()
    }

    /// True when the token is past its `exp` by our clock: ask a new one before the next
    /// request rather than count on the registry's leeway (as oci-client and docker do).
    pub(super) fn expired(&self) -> bool {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.current
            .lock()
            .is_ok_and(|a| a.1.is_some_and(|exp| now > exp))
    }

    /// Ask the registry at `base` (`scheme://host`) how to authenticate for pulling
    /// `repository`, and get a token when it hands them out; kept for every later request.
    pub(super) async fn authorize(
        &self,
        http: &reqwest::Client,
        base: &str,
        repository: &str,
        clock: &Clock,
    ) -> Result<(), Failure> {
        let fresh = self.negotiate(http, base, repository, clock).await?;
        let exp = match &fresh {
            Authorization::Bearer(token) => expiry(token),
            _ => None,
        };
        if let Ok(mut current) = self.current.lock() {
            *current = (fresh, exp);
        }
        Ok(())
    }

    async fn negotiate(
        &self,
        http: &reqwest::Client,
        base: &str,
        repository: &str,
        clock: &Clock,
    ) -> Result<Authorization, Failure> {
        if let RegistryAuth::Bearer(token) = &self.credentials {
            return Ok(Authorization::Bearer(token.clone()));
        }
        let basic = match &self.credentials {
            RegistryAuth::Basic(user, password) => {
                Authorization::Basic(user.clone(), password.clone())
            }
            _ => Authorization::None,
        };
        let answer = clock
            .bound(http.get(format!("{base}/v2/")).send())
            .await?
            .map_err(Failure::Request)?;
        let header = answer
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect::<Vec<_>>();
        // The body of /v2/ says nothing we need: the connection is dropped unread.
        drop(answer);
        match header.iter().find_map(|h| bearer_challenge(h)) {
            Some(challenge) => {
                self.token(http, &challenge, repository, &basic, clock)
                    .await
            }
            None => Ok(basic),
        }
    }

    /// A pull token for `repository` from the challenge's realm.
    async fn token(
        &self,
        http: &reqwest::Client,
        challenge: &Challenge,
        repository: &str,
        basic: &Authorization,
        clock: &Clock,
    ) -> Result<Authorization, Failure> {
        let mut url = reqwest::Url::parse(&challenge.realm).map_err(|e| {
            Failure::Final(crate::Error::Registry(format!(
                "bad token realm {:?}: {e}",
                challenge.realm
            )))
        })?;
        {
            let mut query = url.query_pairs_mut();
            query.append_pair("scope", &format!("repository:{repository}:pull"));
            if let Some(service) = &challenge.service {
                query.append_pair("service", service);
            }
        }
        let answer = transport::send(clock, basic.apply(http.get(url))).await?;
        let body = transport::read_capped(clock, answer, MAX_SMALL_BODY).await?;
        let parsed: TokenAnswer = serde_json::from_slice(&body).map_err(|e| {
            Failure::Final(crate::Error::Registry(format!(
                "unreadable token answer: {e}"
            )))
        })?;
        parsed
            .token
            .or(parsed.access_token)
            .filter(|t| !t.is_empty())
            .map(Authorization::Bearer)
            .ok_or_else(|| {
                Failure::Final(crate::Error::Registry(
                    "token answer without a token".into(),
                ))
            })
    }
}

/// The `exp` claim of a JWT token (none for opaque tokens).
fn expiry(token: &str) -> Option<u64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Claims>(&bytes).ok()?.exp
}

/// The realm and service of a `Bearer` challenge in one `WWW-Authenticate` value.
fn bearer_challenge(header: &str) -> Option<Challenge> {
    ChallengeParser::new(header)
        .filter_map(Result::ok)
        .find(|c| c.scheme.eq_ignore_ascii_case("bearer"))
        .and_then(|c| {
            let param = |name: &str| {
                c.params
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_unescaped())
            };
            Some(Challenge {
                realm: param("realm").filter(|r| !r.is_empty())?,
                service: param("service"),
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_give_realm_and_service() {
        assert_eq!(
            bearer_challenge(
                r#"Bearer realm="https://auth.example/token",service="registry.example",scope="x""#
            ),
            Some(Challenge {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
            })
        );
        assert_eq!(
            bearer_challenge(r#"Basic realm="x", Bearer realm="https://t/""#),
            Some(Challenge {
                realm: "https://t/".into(),
                service: None,
            })
        );
        assert_eq!(bearer_challenge(r#"Basic realm="registry""#), None);
        assert_eq!(bearer_challenge("Bearer service=\"s\""), None);
        assert_eq!(bearer_challenge("garbage ,,, ="), None);
    }

    #[test]
    fn jwt_tokens_expire_at_their_exp() {
        use base64::Engine;
        let exp = rand::random::<u32>() as u64;
        let b64 = |v: serde_json::Value| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
        };
        let jwt = format!(
            "{}.{}.sig",
            b64(serde_json::json!({"alg": "ES256"})),
            b64(serde_json::json!({"exp": exp, "sub": "x"}))
        );
        assert_eq!(expiry(&jwt), Some(exp));
        assert_eq!(expiry("opaque-token"), None);
        assert_eq!(expiry("a.!!!.c"), None);
    }

    #[test]
    fn authorizations_become_headers() {
        let client = reqwest::Client::new();
        let header = |a: Authorization| {
            a.apply(client.get("http://127.0.0.1/"))
                .build()
                .unwrap()
                .headers()
                .get("authorization")
                .map(|v| v.to_str().unwrap().to_owned())
        };
        assert_eq!(header(Authorization::None), None);
        assert_eq!(
            header(Authorization::Bearer("t0k".into())).as_deref(),
            Some("Bearer t0k")
        );
        assert_eq!(
            header(Authorization::Basic("u".into(), "p".into())).as_deref(),
            Some("Basic dTpw")
        );
    }
}
