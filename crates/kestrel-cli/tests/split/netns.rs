//! Two network namespaces joined by a veth pair, for the split network test: the server in
//! one, the device in the other, talking over the namespaces' own addresses. Deleted when
//! dropped (also while a failing test unwinds); deleting a namespace deletes its veth end.

use std::process::{Command, Stdio};

pub struct NetnsPair {
    /// Namespace names: the server's and the device's.
    pub server_ns: String,
    pub device_ns: String,
    pub server_if: String,
    pub device_if: String,
    pub server_ip: String,
    pub device_ip: String,
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl NetnsPair {
    /// Create the pair, or say why it cannot be made here (not root, no `ip`, no netns).
    pub fn create() -> Result<NetnsPair, String> {
        let id = std::process::id() % 1_000_000;
        // Interface names must stay under 16 bytes.
        let p = NetnsPair {
            server_ns: format!("kspl{id}s"),
            device_ns: format!("kspl{id}d"),
            server_if: format!("kspl{id}vs"),
            device_if: format!("kspl{id}vd"),
            server_ip: format!("10.231.{}.1", id % 250),
            device_ip: format!("10.231.{}.2", id % 250),
        };
        // From here on, Drop removes whatever was made.
        p.setup()?;
        Ok(p)
    }

    fn setup(&self) -> Result<(), String> {
        ip(&["netns", "add", &self.server_ns])?;
        ip(&["netns", "add", &self.device_ns])?;
        ip(&[
            "link",
            "add",
            &self.server_if,
            "type",
            "veth",
            "peer",
            "name",
            &self.device_if,
        ])?;
        for (ns, dev, addr) in [
            (&self.server_ns, &self.server_if, &self.server_ip),
            (&self.device_ns, &self.device_if, &self.device_ip),
        ] {
            ip(&["link", "set", dev, "netns", ns])?;
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// Add `ms` of delay on both veth ends (an RTT of 2 x ms) with `tc netem`.
    pub fn netem_delay(&self, ms: u32) -> Result<(), String> {
        for (ns, dev) in [
            (&self.server_ns, &self.server_if),
            (&self.device_ns, &self.device_if),
        ] {
            let out = Command::new("ip")
                .args([
                    "netns", "exec", ns, "tc", "qdisc", "replace", "dev", dev, "root",
                ])
                .args(["netem", "delay", &format!("{ms}ms")])
                .output()
                .map_err(|e| format!("tc: {e}"))?;
            if !out.status.success() {
                return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
            }
        }
        Ok(())
    }
}

impl Drop for NetnsPair {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.server_ns]);
        let _ = ip(&["netns", "del", &self.device_ns]);
        // A veth made before its move into a namespace failed is still in this one.
        let _ = ip(&["link", "del", &self.server_if]);
    }
}
