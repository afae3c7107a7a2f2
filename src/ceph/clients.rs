//! Who is using an image: the one rule for "in use" that `check`, planning,
//! `run` and the rendered scripts (`not_in_use` in render/storage.sh) share.
//!
//! A count of watchers cannot tell a writing server from the peers'
//! rbd-mirror daemons, which watch a mirrored primary too. Identity can: a
//! client that writes to an image with the exclusive-lock feature holds that
//! lock (librbd takes it on the first write and keeps it), and rbd-mirror
//! never holds the lock of the primary image it reads. So:
//!
//! - with exclusive-lock, the users are the lock holders that still watch
//!   the image (a holder without a watch is a crashed client whose lock
//!   librbd breaks on the next request);
//! - without it, nothing tells writers apart, so every watcher is a user.
//!   ferry's plan turns exclusive-lock on for mirrored images (journaling
//!   needs it; snapshot mirroring gets it too), and never mirrors the
//!   images it copies out first (clones), so no rbd-mirror watch is
//!   counted here.
//!
//! The cut-over then holds the exclusive lock itself while it snapshots, so
//! no writer can slip in between the check and the snapshot.

use serde::Serialize;

use super::types::{Features, Locker, Watcher};

/// A client that makes an image "in use", in words for the operator.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImageUser {
    /// `client.4567`, or the watcher's id when only a watch is known.
    pub client: String,
    pub addr: String,
    /// Why it counts: holds the exclusive lock, or watches an image without one.
    pub how: &'static str,
}

impl std::fmt::Display for ImageUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at {} ({})", self.client, self.addr, self.how)
    }
}

/// The clients using an image with these features, watchers and lockers
/// (read through a read-only handle, which neither watches nor locks).
pub fn image_users(features: Features, watchers: &[Watcher], lockers: &[Locker]) -> Vec<ImageUser> {
    if features.contains(Features::EXCLUSIVE_LOCK) {
        lockers
            .iter()
            .filter(|l| watchers.iter().any(|w| same_client(&w.addr, &l.addr)))
            .map(|l| ImageUser {
                client: l.client.clone(),
                addr: l.addr.clone(),
                how: "holds the exclusive lock: it writes",
            })
            .collect()
    } else {
        watchers
            .iter()
            .map(|w| ImageUser {
                client: format!("client.{}", w.id),
                addr: w.addr.clone(),
                how: "has the image open, which has no exclusive-lock to tell writers apart",
            })
            .collect()
    }
}

/// [`image_users`] in words, as `check`, plans and run messages show them.
pub fn user_words(features: Features, watchers: &[Watcher], lockers: &[Locker]) -> Vec<String> {
    image_users(features, watchers, lockers)
        .iter()
        .map(ImageUser::to_string)
        .collect()
}

/// Whether two addresses name the same client instance: `ip:port/nonce`,
/// with or without a `v1:`/`v2:` prefix or brackets.
fn same_client(a: &str, b: &str) -> bool {
    fn norm(s: &str) -> &str {
        let s = s.trim().trim_start_matches('[').trim_end_matches(']');
        s.strip_prefix("v1:")
            .or_else(|| s.strip_prefix("v2:"))
            .or_else(|| s.strip_prefix("any:"))
            .unwrap_or(s)
    }
    norm(a) == norm(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(addr: &str, id: i64) -> Watcher {
        Watcher {
            addr: addr.into(),
            id,
            cookie: 1,
        }
    }
    fn l(client: &str, addr: &str) -> Locker {
        Locker {
            client: client.into(),
            cookie: "auto 1".into(),
            addr: addr.into(),
        }
    }
    const LOCKED: Features = Features(Features::LAYERING.0 | Features::EXCLUSIVE_LOCK.0);

    #[test]
    fn a_lock_holder_that_watches_is_a_user_and_named() {
        let users = image_users(
            LOCKED,
            &[w("127.0.0.1:0/11", 4100), w("127.0.0.1:0/22", 4200)],
            &[l("client.4200", "127.0.0.1:0/22")],
        );
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].client, "client.4200");
        assert!(users[0].to_string().contains("exclusive lock"));
    }

    #[test]
    fn watchers_without_the_lock_are_not_users_of_a_locked_image() {
        // rbd-mirror watching a snapshot-mirrored primary, nobody writing.
        assert!(image_users(LOCKED, &[w("127.0.0.1:0/11", 4100)], &[]).is_empty());
    }

    #[test]
    fn a_lock_without_a_watch_is_stale() {
        assert!(image_users(LOCKED, &[], &[l("client.1", "127.0.0.1:0/9")]).is_empty());
    }

    #[test]
    fn without_exclusive_lock_every_watcher_is_a_user() {
        let users = image_users(Features::LAYERING, &[w("127.0.0.1:0/11", 4100)], &[]);
        assert_eq!(users.len(), 1);
        assert_eq!(users[0].client, "client.4100");
    }

    #[test]
    fn addresses_match_with_or_without_protocol_prefix() {
        assert!(same_client("v1:127.0.0.1:0/22", "127.0.0.1:0/22"));
        assert!(!same_client("127.0.0.1:0/22", "127.0.0.1:0/23"));
    }
}
