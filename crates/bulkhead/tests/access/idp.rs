//! A test identity provider: an RSA key pair made with the `openssl` CLI, tokens signed with
//! `jsonwebtoken`, and the `[[issuers]]` configuration that trusts it.

use std::path::Path;
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

pub const ISS: &str = "https://idp.test/";
pub const ORG_ISS: &str = "https://org.test/";
pub const AUD: &str = "bulkhead";
pub const ORG_SECRET: &str = "org-issuer-shared-secret-0123456789abcdef";

pub struct Idp {
    pub private_pem: String,
    pub public_pem: String,
    /// A second key pair the server does not trust.
    pub rogue_pem: String,
}

fn openssl_key(dir: &Path, name: &str) -> (String, String) {
    let private = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let run =
        |args: &[&str]| {
            let status = Command::new("openssl").args(args).status().unwrap_or_else(|e| {
            panic!("these tests need the `openssl` CLI to make keys (apt-get install openssl): {e}")
        });
            assert!(status.success(), "openssl {args:?} failed");
        };
    run(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
        "-out",
        private.to_str().unwrap(),
    ]);
    run(&[
        "pkey",
        "-in",
        private.to_str().unwrap(),
        "-pubout",
        "-out",
        public.to_str().unwrap(),
    ]);
    (
        std::fs::read_to_string(private).unwrap(),
        std::fs::read_to_string(public).unwrap(),
    )
}

pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

impl Idp {
    pub fn generate(dir: &Path) -> Idp {
        let (private_pem, public_pem) = openssl_key(dir, "idp");
        let (rogue_pem, _) = openssl_key(dir, "rogue");
        Idp {
            private_pem,
            public_pem,
            rogue_pem,
        }
    }

    pub fn config(&self) -> String {
        let key = toml_string(&self.public_pem);
        format!(
            r#"
[[issuers]]
name = "idp"
issuer = "{ISS}"
audience = ["{AUD}"]
keys = [{key}]
algorithms = ["RS256"]
leeway_secs = 5

[[issuers]]
name = "org"
issuer = "{ORG_ISS}"
audience = "{AUD}"
algorithms = ["HS256"]
hs256_secret = "{ORG_SECRET}"
tenant_claim = "org"
leeway_secs = 5
"#
        )
    }

    /// Standard claims for `sub`, valid for ten minutes, merged with `extra`.
    pub fn claims(&self, sub: &str, extra: Value) -> Value {
        let mut claims = json!({
            "iss": ISS, "aud": AUD, "sub": sub,
            "iat": now(), "nbf": now() - 1, "exp": now() + 600,
        });
        if let (Some(base), Some(extra)) = (claims.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                base.insert(k.clone(), v.clone());
            }
        }
        claims
    }

    pub fn sign(&self, claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&Header::new(Algorithm::RS256), claims, &key).unwrap()
    }

    pub fn sign_with_header(&self, header: Header, claims: &Value) -> String {
        let key = EncodingKey::from_rsa_pem(self.private_pem.as_bytes()).unwrap();
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }

    pub fn token(&self, sub: &str, extra: Value) -> String {
        self.sign(&self.claims(sub, extra))
    }

    /// A token of the `org` issuer, whose `org` claim names the tenant.
    pub fn org_token(&self, sub: &str, org: &str) -> String {
        let claims = json!({
            "iss": ORG_ISS, "aud": AUD, "sub": sub, "org": org,
            "iat": now(), "exp": now() + 600,
        });
        let key = EncodingKey::from_secret(ORG_SECRET.as_bytes());
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key).unwrap()
    }
}

fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\n', "\\n"))
}
