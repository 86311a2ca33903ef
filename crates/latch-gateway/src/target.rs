//! The target a user names in their SSH login: `LOGIN@HOST[:PORT]`, as in
//! `ssh -p 2222 -l deploy@db-1.internal gateway` or
//! `ssh -p 2222 deploy@db-1.internal@gateway`.

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    pub login: String,
    pub host: String,
    pub port: u16,
}

impl Target {
    pub fn parse(user: &str) -> Result<Target, String> {
        let (login, rest) =
            user.rsplit_once('@').ok_or_else(|| format!("{user:?} names no target: log in as LOGIN@HOST[:PORT]"))?;
        let (host, port) = match rest.rsplit_once(':') {
            Some((h, p)) => (h, p.parse::<u16>().ok().filter(|p| *p > 0).ok_or_else(|| format!("bad port {p:?}"))?),
            None => (rest, 22),
        };
        let host = host.to_ascii_lowercase();
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host.chars().all(|c| c.is_ascii_alphanumeric() || ".-".contains(c))
            && !host.starts_with(['.', '-']);
        if !host_ok {
            return Err(format!("{host:?} is not a host name"));
        }
        let login_ok = !login.is_empty()
            && login.len() <= 32
            && login.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c));
        if !login_ok {
            return Err(format!("{login:?} is not a login name"));
        }
        Ok(Target { login: login.to_string(), host, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t = Target::parse("deploy@DB-1.internal").unwrap();
        assert_eq!((t.login.as_str(), t.host.as_str(), t.port), ("deploy", "db-1.internal", 22));
        assert_eq!(Target::parse("root@127.0.0.1:2201").unwrap().port, 2201);
        for bad in ["deploy", "@host", "deploy@", "deploy@host:0", "deploy@host:x", "Deploy@host", "a@b@c d", "x@-h"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }
}
