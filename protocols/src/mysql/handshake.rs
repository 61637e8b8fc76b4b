//! Connection phase: the server's Handshake v10, the client's HandshakeResponse41 (and the
//! SSLRequest prefix of it), AuthSwitchRequest and AuthMoreData.
//!
//! MariaDB differences handled here: a MariaDB server clears capability bit 0 (`CLIENT_MYSQL`,
//! the old LONG_PASSWORD) and carries 4 bytes of extended capabilities in the otherwise reserved
//! bytes of both the handshake and the response.

use super::packet::{PacketError, Reader, malformed, put_lenenc_bytes, put_nul_bytes, utf8};

/// Client/server capability flags (CLIENT_*).
pub mod caps {
    pub const LONG_PASSWORD: u32 = 1;
    /// MariaDB's name for bit 0: set by MySQL peers, cleared by MariaDB peers that use the
    /// extended capability bytes.
    pub const MYSQL: u32 = 1;
    pub const FOUND_ROWS: u32 = 1 << 1;
    pub const LONG_FLAG: u32 = 1 << 2;
    pub const CONNECT_WITH_DB: u32 = 1 << 3;
    pub const NO_SCHEMA: u32 = 1 << 4;
    pub const COMPRESS: u32 = 1 << 5;
    pub const ODBC: u32 = 1 << 6;
    pub const LOCAL_FILES: u32 = 1 << 7;
    pub const IGNORE_SPACE: u32 = 1 << 8;
    pub const PROTOCOL_41: u32 = 1 << 9;
    pub const INTERACTIVE: u32 = 1 << 10;
    pub const SSL: u32 = 1 << 11;
    pub const IGNORE_SIGPIPE: u32 = 1 << 12;
    pub const TRANSACTIONS: u32 = 1 << 13;
    pub const RESERVED: u32 = 1 << 14;
    pub const SECURE_CONNECTION: u32 = 1 << 15;
    pub const MULTI_STATEMENTS: u32 = 1 << 16;
    pub const MULTI_RESULTS: u32 = 1 << 17;
    pub const PS_MULTI_RESULTS: u32 = 1 << 18;
    pub const PLUGIN_AUTH: u32 = 1 << 19;
    pub const CONNECT_ATTRS: u32 = 1 << 20;
    pub const PLUGIN_AUTH_LENENC_CLIENT_DATA: u32 = 1 << 21;
    pub const CAN_HANDLE_EXPIRED_PASSWORDS: u32 = 1 << 22;
    pub const SESSION_TRACK: u32 = 1 << 23;
    pub const DEPRECATE_EOF: u32 = 1 << 24;
    pub const OPTIONAL_RESULTSET_METADATA: u32 = 1 << 25;
    pub const ZSTD_COMPRESSION_ALGORITHM: u32 = 1 << 26;
    pub const QUERY_ATTRIBUTES: u32 = 1 << 27;
    pub const MULTI_FACTOR_AUTHENTICATION: u32 = 1 << 28;
    pub const CAPABILITY_EXTENSION: u32 = 1 << 29;
    /// MariaDB's (obsolete) use of bit 29.
    pub const PROGRESS_OBSOLETE: u32 = 1 << 29;
    pub const SSL_VERIFY_SERVER_CERT: u32 = 1 << 30;
    pub const REMEMBER_OPTIONS: u32 = 1 << 31;
}

/// MariaDB extended capabilities (the 4 bytes in the reserved area).
pub mod mariadb_caps {
    pub const PROGRESS: u32 = 1;
    pub const COM_MULTI: u32 = 1 << 1;
    pub const STMT_BULK_OPERATIONS: u32 = 1 << 2;
    pub const EXTENDED_TYPE_INFO: u32 = 1 << 3;
    pub const CACHE_METADATA: u32 = 1 << 4;
    pub const MARIADB_CLIENT_PROGRESS: u32 = PROGRESS;
}

/// First byte of caching_sha2_password's AuthMoreData replies.
pub mod sha2_auth {
    /// Client asks the server for its RSA public key.
    pub const REQUEST_PUBLIC_KEY: u8 = 2;
    /// Server: the cached hash matched; an OK follows.
    pub const FAST_AUTH_OK: u8 = 3;
    /// Server: send the password in full (cleartext over TLS, or RSA-encrypted).
    pub const PERFORM_FULL_AUTH: u8 = 4;
}

pub const NATIVE_PASSWORD: &str = "mysql_native_password";
pub const CACHING_SHA2_PASSWORD: &str = "caching_sha2_password";

/// Size of the SSLRequest payload (the fixed head of a HandshakeResponse41).
pub const SSL_REQUEST_LEN: usize = 32;

/// Handshake v10 sent by the server right after the TCP connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// As sent; MariaDB prefixes "5.5.5-" for old replication clients.
    pub server_version: String,
    pub connection_id: u32,
    /// The auth plugin data without its trailing NUL (20 bytes from MySQL and MariaDB).
    pub scramble: Vec<u8>,
    pub capabilities: u32,
    pub charset: u8,
    pub status: u16,
    pub auth_plugin: String,
    /// MariaDB extended capabilities; 0 from a MySQL server.
    pub mariadb_caps: u32,
}

impl Handshake {
    pub fn parse(payload: &[u8]) -> Result<Handshake, PacketError> {
        let mut r = Reader::new(payload);
        let version = r.u8()?;
        if version != 10 {
            return Err(PacketError::Unsupported(format!(
                "handshake protocol version {version} (only 10 is spoken)"
            )));
        }
        let server_version = String::from_utf8_lossy(r.nul_bytes()?).into_owned();
        let connection_id = r.u32()?;
        let mut scramble = r.bytes(8)?.to_vec();
        r.skip(1)?;
        let mut capabilities = r.u16()? as u32;
        let mut h = Handshake {
            server_version,
            connection_id,
            scramble: Vec::new(),
            capabilities,
            charset: 0,
            status: 0,
            auth_plugin: String::new(),
            mariadb_caps: 0,
        };
        if r.is_empty() {
            h.scramble = scramble;
            return Ok(h);
        }
        h.charset = r.u8()?;
        h.status = r.u16()?;
        capabilities |= (r.u16()? as u32) << 16;
        h.capabilities = capabilities;
        let data_len = r.u8()? as usize;
        let reserved = r.bytes(10)?;
        if capabilities & caps::MYSQL == 0 {
            h.mariadb_caps =
                u32::from_le_bytes([reserved[6], reserved[7], reserved[8], reserved[9]]);
        }
        if capabilities & caps::SECURE_CONNECTION != 0 {
            // The second part is at least 13 bytes; the last of the plugin data is a NUL.
            let n = data_len.saturating_sub(8).max(13);
            let part2 = r
                .bytes(n)
                .map_err(|_| PacketError::Truncated("auth plugin data part 2"))?;
            let part2 = part2.strip_suffix(&[0]).unwrap_or(part2);
            scramble.extend_from_slice(part2);
        }
        h.scramble = scramble;
        if capabilities & caps::PLUGIN_AUTH != 0 {
            h.auth_plugin = utf8(r.nul_bytes()?, "auth plugin name")?;
        }
        Ok(h)
    }

    /// Appends the payload (no packet header).
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(10);
        put_nul_bytes(out, self.server_version.as_bytes());
        out.extend_from_slice(&self.connection_id.to_le_bytes());
        let mut part1 = [0u8; 8];
        let n1 = self.scramble.len().min(8);
        part1[..n1].copy_from_slice(&self.scramble[..n1]);
        out.extend_from_slice(&part1);
        out.push(0);
        out.extend_from_slice(&(self.capabilities as u16).to_le_bytes());
        out.push(self.charset);
        out.extend_from_slice(&self.status.to_le_bytes());
        out.extend_from_slice(&((self.capabilities >> 16) as u16).to_le_bytes());
        // The length byte counts both parts and the NUL: a longer second part (never sent by a
        // real server, whose scramble is 20 bytes) is cut so that a reader stops where it ends.
        let part2 = self.scramble.get(8..).unwrap_or_default();
        let part2 = &part2[..part2.len().min(255 - 8 - 1)];
        let data_len = if self.capabilities & caps::PLUGIN_AUTH != 0 {
            (n1 + part2.len() + 1) as u8
        } else {
            0
        };
        out.push(data_len);
        out.extend_from_slice(&[0; 6]);
        if self.capabilities & caps::MYSQL == 0 {
            out.extend_from_slice(&self.mariadb_caps.to_le_bytes());
        } else {
            out.extend_from_slice(&[0; 4]);
        }
        if self.capabilities & caps::SECURE_CONNECTION != 0 {
            out.extend_from_slice(part2);
            // NUL-terminated and padded to the 13 bytes readers expect at minimum.
            out.extend(std::iter::repeat_n(
                0,
                13usize.saturating_sub(part2.len()).max(1),
            ));
        }
        if self.capabilities & caps::PLUGIN_AUTH != 0 {
            put_nul_bytes(out, self.auth_plugin.as_bytes());
        }
    }

    pub fn is_mariadb(&self) -> bool {
        self.server_version.contains("MariaDB")
    }
}

/// HandshakeResponse41 from the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HandshakeResponse {
    pub capabilities: u32,
    pub max_packet: u32,
    pub charset: u8,
    pub username: String,
    pub auth_response: Vec<u8>,
    pub database: Option<String>,
    pub auth_plugin: Option<String>,
    /// Connection attributes; non-UTF-8 bytes are replaced.
    pub attrs: Vec<(String, String)>,
    /// MariaDB extended capabilities; read and written only when bit 0 of `capabilities` is
    /// clear.
    pub mariadb_caps: u32,
}

impl HandshakeResponse {
    pub fn parse(payload: &[u8]) -> Result<HandshakeResponse, PacketError> {
        let mut r = Reader::new(payload);
        let capabilities = r.u32()?;
        if capabilities & caps::PROTOCOL_41 == 0 {
            return Err(PacketError::Unsupported(
                "HandshakeResponse320 (client without CLIENT_PROTOCOL_41)".into(),
            ));
        }
        let max_packet = r.u32()?;
        let charset = r.u8()?;
        let filler = r.bytes(23)?;
        let mariadb_caps = if capabilities & caps::MYSQL == 0 {
            u32::from_le_bytes([filler[19], filler[20], filler[21], filler[22]])
        } else {
            0
        };
        let username = utf8(r.nul_bytes()?, "user name")?;
        let auth_response = if capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            r.lenenc_bytes()?
        } else if capabilities & caps::SECURE_CONNECTION != 0 {
            let n = r.u8()? as usize;
            r.bytes(n)
                .map_err(|_| PacketError::Truncated("auth response"))?
        } else {
            r.nul_bytes()?
        }
        .to_vec();
        let mut resp = HandshakeResponse {
            capabilities,
            max_packet,
            charset,
            username,
            auth_response,
            database: None,
            auth_plugin: None,
            attrs: Vec::new(),
            mariadb_caps,
        };
        // Clients that set a flag but end the packet early are tolerated for these trailing
        // fields, as servers do; a field that starts must be complete.
        if capabilities & caps::CONNECT_WITH_DB != 0 && !r.is_empty() {
            resp.database = Some(utf8(r.nul_bytes()?, "database name")?);
        }
        if capabilities & caps::PLUGIN_AUTH != 0 && !r.is_empty() {
            resp.auth_plugin = Some(utf8(r.nul_bytes()?, "auth plugin name")?);
        }
        if capabilities & caps::CONNECT_ATTRS != 0 && !r.is_empty() {
            let block = r.lenenc_bytes()?;
            let mut a = Reader::new(block);
            while !a.is_empty() {
                let k = String::from_utf8_lossy(a.lenenc_bytes()?).into_owned();
                let v = String::from_utf8_lossy(a.lenenc_bytes()?).into_owned();
                resp.attrs.push((k, v));
            }
        }
        Ok(resp)
    }

    /// Appends the payload (no packet header). The auth response is written in the form
    /// `capabilities` announces.
    pub fn write(&self, out: &mut Vec<u8>) {
        self.write_head(out);
        put_nul_bytes(out, self.username.as_bytes());
        if self.capabilities & caps::PLUGIN_AUTH_LENENC_CLIENT_DATA != 0 {
            put_lenenc_bytes(out, &self.auth_response);
        } else if self.capabilities & caps::SECURE_CONNECTION != 0 {
            let n = self.auth_response.len().min(255);
            out.push(n as u8);
            out.extend_from_slice(&self.auth_response[..n]);
        } else {
            put_nul_bytes(out, &self.auth_response);
        }
        if self.capabilities & caps::CONNECT_WITH_DB != 0 {
            put_nul_bytes(out, self.database.as_deref().unwrap_or("").as_bytes());
        }
        if self.capabilities & caps::PLUGIN_AUTH != 0 {
            put_nul_bytes(out, self.auth_plugin.as_deref().unwrap_or("").as_bytes());
        }
        if self.capabilities & caps::CONNECT_ATTRS != 0 {
            let mut block = Vec::new();
            for (k, v) in &self.attrs {
                put_lenenc_bytes(&mut block, k.as_bytes());
                put_lenenc_bytes(&mut block, v.as_bytes());
            }
            put_lenenc_bytes(out, &block);
        }
    }

    /// The 32-byte SSLRequest a client sends before the TLS handshake (capabilities should
    /// include [`caps::SSL`]).
    pub fn write_ssl_request(&self, out: &mut Vec<u8>) {
        self.write_head(out);
    }

    fn write_head(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.capabilities.to_le_bytes());
        out.extend_from_slice(&self.max_packet.to_le_bytes());
        out.push(self.charset);
        out.extend_from_slice(&[0; 19]);
        if self.capabilities & caps::MYSQL == 0 {
            out.extend_from_slice(&self.mariadb_caps.to_le_bytes());
        } else {
            out.extend_from_slice(&[0; 4]);
        }
    }
}

/// True for an SSLRequest: the 32-byte head of a HandshakeResponse41 with CLIENT_SSL set.
pub fn is_ssl_request(payload: &[u8]) -> bool {
    match payload.first_chunk::<4>() {
        Some(c) if payload.len() == SSL_REQUEST_LEN => u32::from_le_bytes(*c) & caps::SSL != 0,
        _ => false,
    }
}

/// AuthSwitchRequest (0xFE): the server asks for a response from another plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSwitch {
    pub plugin: String,
    /// Plugin data (the new nonce) without the trailing NUL.
    pub data: Vec<u8>,
}

impl AuthSwitch {
    /// The lone 0xFE of a pre-4.1 server ("use the old password hash") is reported as plugin
    /// `mysql_old_password` with no data.
    pub fn parse(payload: &[u8]) -> Result<AuthSwitch, PacketError> {
        let mut r = Reader::new(payload);
        if r.u8()? != 0xFE {
            return Err(malformed("auth switch request must start with 0xFE"));
        }
        if r.is_empty() {
            return Ok(AuthSwitch {
                plugin: "mysql_old_password".into(),
                data: Vec::new(),
            });
        }
        let plugin = utf8(r.nul_bytes()?, "auth plugin name")?;
        let data = r.rest();
        let data = data.strip_suffix(&[0]).unwrap_or(data).to_vec();
        Ok(AuthSwitch { plugin, data })
    }

    /// Appends the payload; the data gets a trailing NUL as servers send it.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.push(0xFE);
        put_nul_bytes(out, self.plugin.as_bytes());
        put_nul_bytes(out, &self.data);
    }
}

/// The data of an AuthMoreData packet (0x01 + data), `None` for any other packet.
pub fn auth_more_data(payload: &[u8]) -> Option<&[u8]> {
    match payload.split_first() {
        Some((0x01, data)) => Some(data),
        _ => None,
    }
}

/// Payload of an AuthMoreData packet.
pub fn write_auth_more_data(out: &mut Vec<u8>, data: &[u8]) {
    out.push(0x01);
    out.extend_from_slice(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from MariaDB 10.11 (scramble bytes replaced).
    fn mariadb_handshake() -> Handshake {
        Handshake {
            server_version: "5.5.5-10.11.6-MariaDB-0+deb12u1".into(),
            connection_id: 31,
            scramble: b"abcdefghijklmnopqrst".to_vec(),
            capabilities: 0xf7fe_fffe_u32 & !caps::MYSQL,
            charset: 45,
            status: 2,
            auth_plugin: NATIVE_PASSWORD.into(),
            mariadb_caps: mariadb_caps::PROGRESS
                | mariadb_caps::COM_MULTI
                | mariadb_caps::STMT_BULK_OPERATIONS
                | mariadb_caps::EXTENDED_TYPE_INFO
                | mariadb_caps::CACHE_METADATA,
        }
    }

    /// A fuzzer found it: a second scramble part of 247 bytes or more used to overflow the
    /// length byte, and the reader then took the plugin name from the scramble's end.
    #[test]
    fn a_long_scramble_does_not_swallow_the_plugin_name() {
        for len in [240, 246, 247, 248, 300] {
            let mut h = mariadb_handshake();
            h.scramble = vec![7; 8 + len];
            h.auth_plugin = "\n\n\n\u{b}".into();
            let mut out = Vec::new();
            h.write(&mut out);
            let again = Handshake::parse(&out).unwrap();
            assert_eq!(again.auth_plugin, h.auth_plugin, "{len}");
            assert_eq!(again.server_version, h.server_version, "{len}");
        }
    }

    #[test]
    fn handshake_round_trip() {
        for mut h in [mariadb_handshake(), {
            let mut m = mariadb_handshake();
            m.capabilities |= caps::MYSQL;
            m.mariadb_caps = 0;
            m.server_version = "8.0.36".into();
            m.auth_plugin = CACHING_SHA2_PASSWORD.into();
            m
        }] {
            let mut out = Vec::new();
            h.write(&mut out);
            assert_eq!(Handshake::parse(&out).unwrap(), h);
            // Layout: 6 zero bytes then the MariaDB caps inside the 10 reserved bytes.
            let reserved_at = 1 + h.server_version.len() + 1 + 4 + 8 + 1 + 2 + 1 + 2 + 2 + 1;
            assert_eq!(out[reserved_at..reserved_at + 6], [0; 6]);
            assert_eq!(
                out[reserved_at + 6..reserved_at + 10],
                h.mariadb_caps.to_le_bytes()
            );
            for cut in 0..out.len() {
                let _ = Handshake::parse(&out[..cut]);
            }
            h.capabilities |= caps::MYSQL;
            h.mariadb_caps = 0xdead;
            out.clear();
            h.write(&mut out);
            assert_eq!(Handshake::parse(&out).unwrap().mariadb_caps, 0);
        }
    }

    #[test]
    fn handshake_other_versions_refused() {
        assert!(matches!(
            Handshake::parse(&[9, b'x', 0]),
            Err(PacketError::Unsupported(_))
        ));
        assert!(matches!(
            Handshake::parse(&[0xFF, 0x15, 0x04]),
            Err(PacketError::Unsupported(_))
        ));
        assert!(Handshake::parse(&[]).is_err());
    }

    fn response() -> HandshakeResponse {
        HandshakeResponse {
            capabilities: caps::PROTOCOL_41
                | caps::SECURE_CONNECTION
                | caps::PLUGIN_AUTH
                | caps::PLUGIN_AUTH_LENENC_CLIENT_DATA
                | caps::CONNECT_WITH_DB
                | caps::CONNECT_ATTRS
                | caps::SESSION_TRACK,
            max_packet: 1 << 24,
            charset: 45,
            username: "app".into(),
            auth_response: vec![7; 20],
            database: Some("shop".into()),
            auth_plugin: Some(NATIVE_PASSWORD.into()),
            attrs: vec![
                ("_client_name".into(), "libmariadb".into()),
                ("_pid".into(), "42".into()),
            ],
            mariadb_caps: mariadb_caps::STMT_BULK_OPERATIONS,
        }
    }

    #[test]
    fn response_round_trips_in_every_auth_form() {
        let base = response();
        let variants = [
            base.clone(),
            HandshakeResponse {
                capabilities: base.capabilities & !caps::PLUGIN_AUTH_LENENC_CLIENT_DATA,
                ..base.clone()
            },
            HandshakeResponse {
                capabilities: caps::PROTOCOL_41 | caps::LONG_PASSWORD,
                auth_response: b"old".to_vec(),
                database: None,
                auth_plugin: None,
                attrs: vec![],
                mariadb_caps: 0,
                ..base.clone()
            },
            HandshakeResponse {
                capabilities: base.capabilities | caps::MYSQL,
                mariadb_caps: 0,
                ..base.clone()
            },
        ];
        for v in variants {
            let mut out = Vec::new();
            v.write(&mut out);
            assert_eq!(HandshakeResponse::parse(&out).unwrap(), v);
            assert!(!is_ssl_request(&out));
            for cut in 0..out.len() {
                let _ = HandshakeResponse::parse(&out[..cut]);
            }
        }
    }

    #[test]
    fn response_errors() {
        let mut out = Vec::new();
        HandshakeResponse {
            capabilities: caps::LONG_PASSWORD,
            ..response()
        }
        .write(&mut out);
        assert!(matches!(
            HandshakeResponse::parse(&out),
            Err(PacketError::Unsupported(_))
        ));
        // Lying auth-response length (1-byte form).
        let r = HandshakeResponse {
            capabilities: caps::PROTOCOL_41 | caps::SECURE_CONNECTION,
            ..response()
        };
        let mut out = Vec::new();
        r.write(&mut out);
        let at = 32 + r.username.len() + 1;
        out[at] = 200;
        assert_eq!(
            HandshakeResponse::parse(&out),
            Err(PacketError::Truncated("auth response"))
        );
        // Lying attribute block length.
        let mut out = Vec::new();
        response().write(&mut out);
        let n = out.len();
        out.truncate(n - 3);
        assert!(HandshakeResponse::parse(&out).is_err());
    }

    #[test]
    fn ssl_request() {
        let r = HandshakeResponse {
            capabilities: response().capabilities | caps::SSL,
            ..response()
        };
        let mut out = Vec::new();
        r.write_ssl_request(&mut out);
        assert_eq!(out.len(), SSL_REQUEST_LEN);
        assert!(is_ssl_request(&out));
        out[1] &= !(caps::SSL >> 8) as u8;
        assert!(!is_ssl_request(&out));
        assert!(!is_ssl_request(&out[..31]));
    }

    #[test]
    fn auth_switch_and_more_data() {
        let s = AuthSwitch {
            plugin: NATIVE_PASSWORD.into(),
            data: b"01234567890123456789".to_vec(),
        };
        let mut out = Vec::new();
        s.write(&mut out);
        assert_eq!(out.last(), Some(&0));
        assert_eq!(AuthSwitch::parse(&out).unwrap(), s);
        for cut in 0..out.len() {
            let _ = AuthSwitch::parse(&out[..cut]);
        }
        assert_eq!(
            AuthSwitch::parse(&[0xFE]).unwrap().plugin,
            "mysql_old_password"
        );
        assert!(AuthSwitch::parse(&[0xFE, b'a']).is_err());
        assert!(AuthSwitch::parse(&[0x00]).is_err());
        assert_eq!(
            auth_more_data(&[1, sha2_auth::FAST_AUTH_OK]),
            Some(&[3u8][..])
        );
        assert_eq!(auth_more_data(&[0, 1]), None);
        assert_eq!(auth_more_data(&[]), None);
        let mut out = Vec::new();
        write_auth_more_data(&mut out, b"key");
        assert_eq!(auth_more_data(&out), Some(&b"key"[..]));
    }
}
