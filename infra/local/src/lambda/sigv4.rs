//! The management API's check of a SigV4 signature, as API Gateway makes it for the functions'
//! `postToConnection`: the request is signed again with the one credential this host knows
//! (the one the functions were given) and the signatures compared. Only in `--lambda-endpoint`
//! mode; `relay serve`'s own pusher sends the process's management key instead.

use std::time::{Duration, SystemTime};

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};

/// How far a request's `X-Amz-Date` may be from now (AWS: 5 minutes).
const MAX_SKEW: Duration = Duration::from_secs(300);

pub struct SigV4Verifier {
    access_key_id: String,
    secret_access_key: SecretString,
    region: String,
}

impl std::fmt::Debug for SigV4Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigV4Verifier")
            .field("access_key_id", &self.access_key_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// The parts of `Authorization: AWS4-HMAC-SHA256 Credential=…, SignedHeaders=…, Signature=…`.
struct Authorization<'a> {
    access_key_id: &'a str,
    region: &'a str,
    service: &'a str,
    signed_headers: Vec<&'a str>,
    signature: &'a str,
}

fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix("AWS4-HMAC-SHA256 ")?;
    let (mut credential, mut signed, mut signature) = (None, None, None);
    for part in rest.split(',').map(str::trim) {
        let (k, v) = part.split_once('=')?;
        match k {
            "Credential" => credential = Some(v),
            "SignedHeaders" => signed = Some(v),
            "Signature" => signature = Some(v),
            _ => {}
        }
    }
    let mut scope = credential?.split('/');
    let access_key_id = scope.next()?;
    let _date = scope.next()?;
    let region = scope.next()?;
    let service = scope.next()?;
    Some(Authorization {
        access_key_id,
        region,
        service,
        signed_headers: signed?.split(';').collect(),
        signature: signature?,
    })
}

fn parse_amz_date(value: &str) -> Option<SystemTime> {
    let t = chrono::NaiveDateTime::parse_from_str(value, "%Y%m%dT%H%M%SZ").ok()?;
    let secs = u64::try_from(t.and_utc().timestamp()).ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(secs))
}

impl SigV4Verifier {
    pub fn new(access_key_id: String, secret_access_key: SecretString, region: String) -> Self {
        Self {
            access_key_id,
            secret_access_key,
            region,
        }
    }

    /// Whether the request carries a valid signature of this host's credential for
    /// `execute-api` in its region, made within the allowed clock skew.
    pub fn verify(&self, method: &str, uri: &str, headers: &HeaderMap, body: &[u8]) -> bool {
        self.check(method, uri, headers, body).is_some()
    }

    fn check(&self, method: &str, uri: &str, headers: &HeaderMap, body: &[u8]) -> Option<()> {
        let auth = parse_authorization(headers.get(http::header::AUTHORIZATION)?.to_str().ok()?)?;
        if auth.access_key_id != self.access_key_id
            || auth.region != self.region
            || auth.service != "execute-api"
        {
            return None;
        }
        let time = parse_amz_date(headers.get("x-amz-date")?.to_str().ok()?)?;
        let skew = SystemTime::now()
            .duration_since(time)
            .or_else(|e| Ok::<_, ()>(e.duration()))
            .ok()?;
        if skew > MAX_SKEW {
            return None;
        }
        let mut signed = Vec::with_capacity(auth.signed_headers.len());
        for name in &auth.signed_headers {
            let value = headers.get(*name)?.to_str().ok()?;
            signed.push((*name, value));
        }
        let identity = Credentials::new(
            &self.access_key_id,
            self.secret_access_key.expose_secret(),
            None,
            None,
            "relay-serve",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name("execute-api")
            .time(time)
            .settings(SigningSettings::default())
            .build()
            .ok()?
            .into();
        let request =
            SignableRequest::new(method, uri, signed.into_iter(), SignableBody::Bytes(body))
                .ok()?;
        let (_, expected) = sign(request, &params).ok()?.into_parts();
        constant_time_eq(expected.as_bytes(), auth.signature.as_bytes()).then_some(())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_authorization_header_is_read_into_its_parts() {
        let a = parse_authorization(
            "AWS4-HMAC-SHA256 Credential=AKID/20261202/us-east-1/execute-api/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc",
        );
        let Some(a) = a else { panic!("parsed") };
        assert_eq!(a.access_key_id, "AKID");
        assert_eq!(a.region, "us-east-1");
        assert_eq!(a.service, "execute-api");
        assert_eq!(a.signed_headers, vec!["host", "x-amz-date"]);
        assert_eq!(a.signature, "abc");
        assert!(parse_authorization("Bearer x").is_none());
    }

    /// A request signed as the SDK signs it verifies; any change to it does not.
    #[test]
    fn a_signature_verifies_only_for_the_request_signed() {
        let verifier = SigV4Verifier::new(
            "testing".into(),
            SecretString::from("secret".to_owned()),
            "us-east-1".into(),
        );
        let identity = Credentials::new("testing", "secret", None, None, "t").into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region("us-east-1")
            .name("execute-api")
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map(Into::into);
        let Ok(params) = params else { panic!("params") };
        let uri = "/prod/%40connections/abc%3D";
        let headers = [("host", "127.0.0.1:9")];
        let Ok(request) = SignableRequest::new(
            "POST",
            uri,
            headers.iter().copied(),
            SignableBody::Bytes(b"hello"),
        ) else {
            panic!("request")
        };
        let Ok(out) = sign(request, &params) else {
            panic!("signed")
        };
        let mut req = http::Request::builder()
            .method("POST")
            .uri(uri)
            .header("host", "127.0.0.1:9")
            .body(())
            .unwrap_or_default();
        let (instructions, _) = out.into_parts();
        instructions.apply_to_request_http1x(&mut req);
        let h = req.headers().clone();
        assert!(verifier.verify("POST", uri, &h, b"hello"));
        assert!(!verifier.verify("POST", uri, &h, b"hellO"));
        assert!(!verifier.verify("POST", "/prod/%40connections/abd%3D", &h, b"hello"));
        let other = SigV4Verifier::new(
            "testing".into(),
            SecretString::from("other".to_owned()),
            "us-east-1".into(),
        );
        assert!(!other.verify("POST", uri, &h, b"hello"));
    }
}
