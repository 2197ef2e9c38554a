//! The real binary's TUI in a tmux pane, read back as text: for tests of what the screen shows.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmux server of its own (its own socket) running `cdc-tui` in the pane `cdc`, killed when
/// the test ends however it ends.
pub struct Tmux {
    socket: String,
    /// Where the pane writes the binary's exit status.
    exit_file: PathBuf,
}

impl Tmux {
    /// Starts `cdc-tui` in TUI mode in `dir` (where its `cdc.toml` is), on a pane of `width` x
    /// `height`; `env` is put before the command (`NAME=value`, or empty).
    pub fn start_tui(label: &str, dir: &Path, env: &str, width: u16, height: u16) -> Tmux {
        Self::start_tui_with_args(label, dir, env, "", width, height)
    }

    /// As [`Tmux::start_tui`], with command-line arguments (`args`, shell words) for cdc-tui.
    pub fn start_tui_with_args(
        label: &str,
        dir: &Path,
        env: &str,
        args: &str,
        width: u16,
        height: u16,
    ) -> Tmux {
        let tmux = Tmux {
            socket: format!("cdc-tui-{label}-{}", std::process::id()),
            exit_file: dir.join("exit-status"),
        };
        let command = format!(
            // `cat` keeps the pane open after the TUI exits, to look at the terminal it left.
            "cd {dir} && {env} {binary} {args}; echo $? > {exit}; cat",
            dir = dir.display(),
            binary = env!("CARGO_BIN_EXE_cdc-tui"),
            exit = tmux.exit_file.display()
        );
        let (width, height) = (width.to_string(), height.to_string());
        tmux.run(&[
            "new-session",
            "-d",
            "-s",
            "cdc",
            "-x",
            &width,
            "-y",
            &height,
            "sh",
            "-c",
            &command,
        ]);
        tmux
    }

    pub fn run(&self, args: &[&str]) -> String {
        let output = Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs (apt-get install tmux)");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    pub fn screen(&self) -> String {
        self.run(&["capture-pane", "-p", "-t", "cdc"])
    }

    pub fn keys(&self, keys: &str) {
        self.run(&["send-keys", "-t", "cdc", keys]);
    }

    /// Waits until the screen satisfies `condition`, or fails with the screen shown.
    pub async fn wait_for(&self, what: &str, condition: impl Fn(&str) -> bool) -> String {
        super::eventually(what, async || {
            let screen = self.screen();
            if condition(&screen) {
                Ok(screen)
            } else {
                Err(format!("the screen:\n{screen}"))
            }
        })
        .await
    }

    /// Waits until the binary has exited; returns its exit status.
    pub async fn exit_status(&self) -> String {
        super::eventually("the exit status", async || {
            match std::fs::read_to_string(&self.exit_file) {
                // The line is whole once it ends.
                Ok(text) if text.ends_with('\n') => Ok(text.trim().to_string()),
                Ok(text) => Err(format!("{text:?} so far")),
                Err(error) => Err(error.to_string()),
            }
        })
        .await
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = Command::new("tmux")
            .args(["-L", &self.socket, "kill-server"])
            .output();
    }
}
