//! The top-level sections: `http`, `log`, `csms`, `buses`.

use std::net::SocketAddr;

use serde_saphyr::Spanned;

use super::values::{check_csms_url, parse_bool, parse_parity};
use super::{BusDraft, Pos, Validator};
use crate::config::raw::{EntryList, RawBus, RawCsms, RawHttp, RawLog, position};
use crate::config::{
    BusConfig, CsmsConfig, DEFAULT_HTTP_LISTEN, DEFAULT_SECURITY_PROFILE, HttpConfig, LogConfig,
    LogFormat,
};

impl Validator<'_> {
    pub(super) fn http(&mut self, raw: Option<&Spanned<RawHttp>>) -> HttpConfig {
        let Some(raw) = raw else {
            return HttpConfig {
                listen: DEFAULT_HTTP_LISTEN,
                allow_remote: false,
            };
        };
        let raw = &raw.value;
        let listen = self.opt("listen", raw.listen.as_ref(), |t| {
            t.parse::<SocketAddr>().map_err(|_| {
                format!("`{t}` is not an IP address and port, e.g. 127.0.0.1:9464 or [::1]:9464")
            })
        });
        let allow_remote = self
            .opt("allow_remote", raw.allow_remote.as_ref(), parse_bool)
            .unwrap_or(false);
        if let (Some(addr), Some(s)) = (listen, raw.listen.as_ref())
            && !addr.ip().to_canonical().is_loopback()
            && !allow_remote
        {
            self.err(
                position(s),
                format!(
                    "`listen`: {addr} is reachable from other machines, and /status and \
                     /metrics are meant for this host; listen on 127.0.0.1, or set \
                     `allow_remote: true` under `http:` if that is intended"
                ),
            );
        }
        HttpConfig {
            listen: listen.unwrap_or(DEFAULT_HTTP_LISTEN),
            allow_remote,
        }
    }

    pub(super) fn log(&mut self, raw: Option<&Spanned<RawLog>>) -> LogConfig {
        let raw = raw.map(|r| &r.value);
        let format = self
            .opt("format", raw.and_then(|r| r.format.as_ref()), |t| match t {
                "text" => Ok(LogFormat::Text),
                "json" => Ok(LogFormat::Json),
                _ => Err(format!("`{t}` is not a log format; use text or json")),
            })
            .unwrap_or(LogFormat::Text);
        let filter = self
            .opt("filter", raw.and_then(|r| r.filter.as_ref()), |t| {
                tracing_subscriber::EnvFilter::try_new(t)
                    .map(|_| t.to_owned())
                    .map_err(|e| {
                        format!("`{t}` is not a log filter ({e}); e.g. info or chargebridge=debug")
                    })
            })
            .unwrap_or_else(|| "info".to_owned());
        LogConfig { format, filter }
    }

    pub(super) fn csms(&mut self, top: Pos, raw: Option<&Spanned<RawCsms>>) -> Option<CsmsConfig> {
        let Some(raw_csms) = raw else {
            self.err(
                top,
                "missing `csms:`; add at least `csms: { url: wss://HOST/PATH }`",
            );
            return None;
        };
        let at = position(raw_csms);
        let raw = &raw_csms.value;
        let url = match &raw.url {
            Some(u) => self.opt("url", Some(u), check_csms_url),
            None => {
                self.err(
                    at,
                    "missing `url:` under `csms:`, e.g. wss://csms.example.com/ocpp",
                );
                None
            }
        };
        let profile = self.opt(
            "security_profile",
            raw.security_profile.as_ref(),
            |t| match t.parse::<u8>() {
                Ok(p @ 1..=3) => Ok(p),
                _ => Err(format!(
                    "`{t}` is not a security profile; use 1 (ws:// + Basic Auth), \
                         2 (TLS + Basic Auth) or 3 (TLS + client certificate)"
                )),
            },
        );
        let profile_given = raw.security_profile.is_some();
        let profile = profile.unwrap_or(DEFAULT_SECURITY_PROFILE);
        let ca_file = self.readable_file("ca_file", raw.ca_file.as_ref());
        let allow_insecure = self
            .opt("allow_insecure", raw.allow_insecure.as_ref(), parse_bool)
            .unwrap_or(false);

        // OCPP 1.6 security whitepaper: profile 1 is plain ws:// (trusted networks only), profiles
        // 2 and 3 are TLS. The URL and the profile must say the same thing.
        let url_at = raw.url.as_ref().map_or(at, position);
        let profile_at = raw.security_profile.as_ref().map_or(at, position);
        if let Some(url) = &url {
            let tls = url.to_ascii_lowercase().starts_with("wss://");
            if tls && profile == 1 && profile_given {
                self.err(
                    profile_at,
                    "`security_profile`: 1 is plain ws:// without TLS, but `url` is wss://; \
                     use 2 (TLS + Basic Auth) or 3 (TLS + client certificate)",
                );
            } else if !tls && profile != 1 {
                self.err(
                    url_at,
                    format!(
                        "`url`: security profile {profile} needs TLS (wss://); for plain ws:// \
                         set `security_profile: 1` and `allow_insecure: true` (trusted networks only)"
                    ),
                );
            } else if !tls && !allow_insecure {
                self.err(
                    url_at,
                    "`url`: plain ws:// sends the Basic Auth password unencrypted; use wss://, \
                     or set `allow_insecure: true` under `csms:` on a trusted network (VPN)",
                );
            }
        }
        Some(CsmsConfig {
            url: url?,
            security_profile: profile,
            ca_file,
            allow_insecure,
        })
    }

    pub(super) fn buses(&mut self, raw: &EntryList<Spanned<RawBus>>) -> Vec<BusDraft> {
        let mut out: Vec<BusDraft> = Vec::new();
        for (name, bus) in &raw.0 {
            let at = position(name);
            if name.value.trim().is_empty() {
                self.err(at, "a bus needs a name, e.g. `rs485-1:`");
            }
            if let Some(first) = out.iter().find(|b| b.name == name.value) {
                let line = first.at.0;
                self.err(
                    at,
                    format!("bus `{}` is already defined at line {line}", name.value),
                );
                continue;
            }
            let raw = &bus.value;
            let port = match &raw.port {
                Some(p) => self
                    .opt("port", Some(p), |t| {
                        if t.is_empty() {
                            Err("is empty; write the serial device, e.g. /dev/ttyUSB0".to_owned())
                        } else {
                            Ok(t.to_owned())
                        }
                    })
                    .unwrap_or_default(),
                None => {
                    self.err(
                        at,
                        format!(
                            "bus `{}` needs `port:` (the serial device, e.g. /dev/ttyUSB0)",
                            name.value
                        ),
                    );
                    String::new()
                }
            };
            let baud = self.opt("baud", raw.baud.as_ref(), |t| match t.parse::<u32>() {
                Ok(b) if b > 0 => Ok(b),
                _ => Err(format!("`{t}` is not a baud rate, e.g. 9600 or 19200")),
            });
            let parity = self.opt("parity", raw.parity.as_ref(), parse_parity);
            let data_bits = self.opt("data_bits", raw.data_bits.as_ref(), |t| match t {
                "7" => Ok(7),
                "8" => Ok(8),
                _ => Err(format!("`{t}` data bits: use 7 or 8")),
            });
            let stop_bits = self.opt("stop_bits", raw.stop_bits.as_ref(), |t| match t {
                "1" => Ok(1),
                "2" => Ok(2),
                _ => Err(format!("`{t}` stop bits: use 1 or 2")),
            });
            let timeout =
                self.opt(
                    "timeout",
                    raw.timeout.as_ref(),
                    |t| match crate::duration::parse(t)? {
                        d if d.is_zero() => Err("must be longer than 0, e.g. 1s".to_owned()),
                        d => Ok(d),
                    },
                );
            let request_delay = self.opt(
                "request_delay",
                raw.request_delay.as_ref(),
                crate::duration::parse,
            );
            out.push(BusDraft {
                name: name.value.clone(),
                at,
                port_at: raw.port.as_ref().map_or(at, position),
                config: BusConfig {
                    port,
                    baud,
                    parity,
                    data_bits,
                    stop_bits,
                    timeout,
                    request_delay,
                },
            });
        }
        out
    }
}
