//! Process checks through /proc, used to adopt nodes and the endpoint process from pid
//! files and to tell a live one from a reused pid or a zombie.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// True when `pid` runs (not a zombie) and is the valkey-server of the node directory
/// `dir`: a pid file only counts when the process behind it is still *our* node. The
/// working directory identifies the node (each node runs in its own directory); the
/// command line cannot, because valkey-server rewrites its process title.
pub fn is_our_node(pid: u32, dir: &Path) -> bool {
    if !is_alive(pid) {
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

/// True when `pid` runs (not a zombie) `keyhaven endpoint --dir DIR` for the endpoint
/// directory `dir`: its command line says so (Keyhaven never rewrites its own).
pub fn is_our_endpoint(pid: u32, dir: &Path) -> bool {
    if !is_alive(pid) {
        return false;
    }
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let [_exe, cmd, flag, arg, ..] = args.as_slice() else {
        return false;
    };
    let same_dir = || {
        let arg = Path::new(std::ffi::OsStr::from_bytes(arg));
        arg == dir || matches!((arg.canonicalize(), dir.canonicalize()), (Ok(a), Ok(b)) if a == b)
    };
    *cmd == b"endpoint" && *flag == b"--dir" && same_dir()
}

/// The process exists and is no zombie. Its state follows the parenthesised command name
/// in /proc/PID/stat: "pid (comm) S ...".
fn is_alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.trim_start().chars().next());
    !matches!(state, Some('Z') | Some('X') | None)
}

pub fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
