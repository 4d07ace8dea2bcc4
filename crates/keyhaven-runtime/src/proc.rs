//! Process checks through /proc, used to adopt nodes from pid files and to tell a live
//! valkey-server from a reused pid or a zombie.

use std::path::Path;

/// True when `pid` runs (not a zombie) and its command line names `conf`: a pid file only
/// counts when the process behind it is still *our* valkey-server.
pub fn is_our_node(pid: u32, conf: &Path) -> bool {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(_) => return false,
    };
    // The state follows the parenthesised command name: "pid (comm) S ...".
    let state = stat.rsplit_once(')').and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z') | Some('X') | None) {
        return false;
    }
    let cmdline = match std::fs::read(format!("/proc/{pid}/cmdline")) {
        Ok(c) => c,
        Err(_) => return false,
    };
    let conf = conf.as_os_str().as_encoded_bytes();
    cmdline.split(|b| *b == 0).any(|arg| arg == conf)
}

pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
