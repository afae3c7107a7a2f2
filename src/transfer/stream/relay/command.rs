//! How the relay reaches and starts the agents: the ends of a stream,
//! the relay's options, and the `ssh` (or local) commands that run
//! `ferry agent send|receive`, every word of them quoted for the remote
//! shell.

use std::process::Command;
use std::time::Duration;

use super::super::StreamError;
use crate::transfer::file::Zeroed;

/// One end of a stream: a host reached over ssh and a path there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// What `ssh` takes as the destination (`host`, `user@host`, a `Host`
    /// of the ssh config).
    pub host: String,
    /// The file or block device on that host.
    pub path: String,
}

impl std::str::FromStr for Remote {
    type Err = String;

    /// `HOST:PATH`, as scp writes it.
    fn from_str(s: &str) -> Result<Remote, String> {
        match s.split_once(':') {
            Some((host, path)) if !host.is_empty() && !path.is_empty() => Ok(Remote {
                host: host.to_string(),
                path: path.to_string(),
            }),
            _ => Err(format!("{s:?} is not HOST:PATH (e.g. convhost-a:/dev/vdb)")),
        }
    }
}

impl std::fmt::Display for Remote {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.path)
    }
}

/// How the relay reaches and runs the agents.
#[derive(Debug, Clone)]
pub struct RelayOptions {
    /// Options for every `ssh` call, before the host (`-F FILE`, `-o
    /// KEY=VALUE`, `-i KEY`, `-p PORT` ...).
    pub ssh_options: Vec<String>,
    /// The ferry command on the hosts, as their shell reads it (`ferry`,
    /// `/usr/local/bin/ferry`, `sudo -n ferry`).
    pub remote_ferry: String,
    /// The destination host's, when it differs from `remote_ferry`.
    pub target_ferry: Option<String>,
    /// A side that moves no bytes for this long ends the stream.
    pub stall: Duration,
    /// The directory of the receiving host's record of the target; None:
    /// beside a file target.
    pub state_dir: Option<String>,
    /// Whether the target reads as zeros where nothing was written.
    pub zeroed: Zeroed,
    /// Read the source as this many bytes (a device larger than its
    /// volume); None: its own size.
    pub size: Option<u64>,
    /// Names the source for the receiver's record; None: its path.
    pub identity: Option<String>,
}

impl Default for RelayOptions {
    fn default() -> RelayOptions {
        RelayOptions {
            ssh_options: Vec::new(),
            remote_ferry: "ferry".into(),
            target_ferry: None,
            stall: super::super::DEFAULT_STALL,
            state_dir: None,
            zeroed: Zeroed::Auto,
            size: None,
            identity: None,
        }
    }
}

/// Single-quotes `word` for a POSIX shell.
pub fn shell_quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

/// The remote shell's command line for `ferry ARGS`: the ferry command's
/// words (`sudo -n ferry`) and the arguments, each quoted, so that no
/// word, wherever it came from, is read as shell syntax.
pub fn remote_command(ferry: &str, args: &[String]) -> String {
    ferry
        .split_whitespace()
        .map(shell_quote)
        .chain(args.iter().map(|a| shell_quote(a)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The `ssh` command that runs `ferry ARGS` on `host`: no terminal, no
/// password prompt (a prompt nobody answers would be a hang), the caller's
/// options first, then AES-GCM preferred where nobody chose ciphers (see
/// [`super::super::cipher`]).
pub fn ssh_command(host: &str, opts: &RelayOptions, args: &[String]) -> Command {
    let remote = remote_command(&opts.remote_ferry, args);
    let mut cmd = Command::new("ssh");
    cmd.args(&opts.ssh_options)
        .args(super::super::cipher::options_for(&opts.ssh_options, host))
        .args(["-T", "-o", "BatchMode=yes", "--", host])
        .arg(remote);
    cmd
}

/// The host name that runs an agent here, as a child of this process
/// (`local:PATH`): `ferry stream` run on a conversion host itself carries
/// the bytes over one ssh connection (the hosts then need ssh access to
/// each other), where run elsewhere it relays them over two.
pub const LOCAL: &str = "local";

/// The command that runs `ferry ARGS` on `host`: over ssh, or here for
/// [`LOCAL`].
pub(super) fn agent_command(
    host: &str,
    opts: &RelayOptions,
    args: &[String],
) -> Result<Command, StreamError> {
    if host != LOCAL {
        return Ok(ssh_command(host, opts, args));
    }
    let exe = std::env::current_exe().map_err(|e| StreamError::Io {
        what: "finding this ferry to run a local agent".into(),
        error: e,
    })?;
    let mut cmd = Command::new(exe);
    cmd.args(args);
    Ok(cmd)
}

/// The agents' arguments for a stream from `from` to `to`.
pub fn agent_args(from: &Remote, to: &Remote, opts: &RelayOptions) -> (Vec<String>, Vec<String>) {
    // The agents wait longer than the relay: the relay is the one that
    // sees both sides and names the stuck one; the agents' own limit is
    // for a relay that is gone without closing their pipes.
    let stall = (2 * opts.stall.as_secs().max(1) + 5).to_string();
    let mut send = vec![
        "agent".into(),
        "send".into(),
        "--path".into(),
        from.path.clone(),
        "--stall-timeout".into(),
        stall.clone(),
    ];
    if let Some(s) = opts.size {
        send.extend(["--size".into(), s.to_string()]);
    }
    if let Some(i) = &opts.identity {
        send.extend(["--identity".into(), i.clone()]);
    }
    let mut receive = vec![
        "agent".into(),
        "receive".into(),
        "--path".into(),
        to.path.clone(),
        "--stall-timeout".into(),
        stall,
        "--target-zeroed".into(),
        match opts.zeroed {
            Zeroed::Auto => "auto",
            Zeroed::Yes => "yes",
            Zeroed::No => "no",
        }
        .into(),
    ];
    if let Some(d) = &opts.state_dir {
        receive.extend(["--state-dir".into(), d.clone()]);
    }
    (send, receive)
}

#[cfg(test)]
mod remote_command_tests {
    use super::remote_command;

    #[test]
    fn every_word_of_the_remote_command_is_quoted() {
        let args = vec!["agent".to_string(), "--path".into(), "/mnt/a b".into()];
        assert_eq!(
            remote_command("sudo -n /usr/local/bin/ferry", &args),
            "sudo -n /usr/local/bin/ferry agent --path '/mnt/a b'"
        );
        // Shell syntax in the command is a word, never a second command.
        assert_eq!(
            remote_command("ferry;touch /tmp/x $(id)", &[]),
            "'ferry;touch' /tmp/x '$(id)'"
        );
    }
}
