//! A run asked to stop (SIGINT, SIGTERM: a cancelled Actions job) cuts short the command under
//! way as a timeout would — killed where it runs, with everything it started — unless a step that
//! must not be cut short (the swap) holds a [`Shield`]: its commands run to their end, and the run
//! stops after it.

use std::sync::OnceLock;

use tokio::sync::watch;

#[derive(Clone, Copy, Debug, Default)]
struct State {
    /// Why the run was asked to stop ("SIGINT").
    asked: Option<&'static str>,
    /// Steps under way that must not be cut short.
    shields: u32,
}

fn state() -> &'static watch::Sender<State> {
    static STATE: OnceLock<watch::Sender<State>> = OnceLock::new();
    STATE.get_or_init(|| watch::channel(State::default()).0)
}

/// Asks the run to stop (the first reason is kept).
pub fn ask(why: &'static str) {
    state().send_modify(|s| {
        s.asked.get_or_insert(why);
    });
}

/// Why the run was asked to stop, if it was.
pub fn asked() -> Option<&'static str> {
    state().borrow().asked
}

/// Why a command starting now would be cut short at once (asked to stop, no shield up).
pub fn stopping() -> Option<&'static str> {
    let s = *state().borrow();
    s.asked.filter(|_| s.shields == 0)
}

/// Resolves, with the reason, once the run is asked to stop and no shield is up: what a command
/// waits on beside its own end.
pub async fn cut_short() -> &'static str {
    let mut rx = state().subscribe();
    loop {
        let s = *rx.borrow_and_update();
        if let (Some(why), 0) = (s.asked, s.shields) {
            return why;
        }
        if rx.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// While alive, no command is cut short.
pub struct Shield(());

/// Holds commands to their end until the shield drops.
pub fn shield() -> Shield {
    state().send_modify(|s| s.shields += 1);
    Shield(())
}

impl Drop for Shield {
    fn drop(&mut self) {
        state().send_modify(|s| s.shields -= 1);
    }
}
