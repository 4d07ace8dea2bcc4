//! Process checks through /proc, used to adopt nodes from pid files and to tell a live
//! valkey-server from a reused pid or a zombie.

use std::path::Path;

/// True when `pid` runs (not a zombie) and is the valkey-server of the node directory
/// `dir`: a pid file only counts when the process behind it is still *our* node. The
/// working directory identifies the node (each node runs in its own directory); the
/// command line cannot, because valkey-server rewrites its process title.
pub fn is_our_node(pid: u32, dir: &Path) -> bool {
    let stat = match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(s) => s,
        Err(_) => return false,
    };
    // The state follows the parenthesised command name: "pid (comm) S ...".
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    if matches!(state, Some('Z') | Some('X') | None) {
        return false;
    }
    let is_valkey = std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|exe| {
            exe.file_name()
                .is_some_and(|n| n.to_string_lossy().contains("valkey"))
        })
        .unwrap_or(false);
    is_valkey && std::fs::read_link(format!("/proc/{pid}/cwd")).is_ok_and(|cwd| cwd == dir)
}

pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
