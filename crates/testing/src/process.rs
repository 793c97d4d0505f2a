//! Guards for processes a test starts (agents, watchers): ended by their own pid, never by name.

use std::process::Child;

/// A child process killed (by its pid) and reaped when dropped, also when an assertion fails.
#[derive(Debug)]
pub struct KillOnDrop(pub Child);

impl KillOnDrop {
    /// The process id (for signals the test sends itself).
    pub fn id(&self) -> u32 {
        self.0.id()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}
