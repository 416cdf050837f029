//! Keeping rendered files current: every `[[template]]` is rendered with the secrets it asks
//! for; a file is replaced (atomically) only when its output changed, and then its command runs
//! or its process gets a signal. Afterwards each secret is kept fresh on its own clock: a
//! renewable lease is renewed at about two thirds of its TTL and the secret fetched anew once a
//! renewal comes back capped by the lease's max TTL; a secret with a lease that cannot be
//! renewed, or a certificate, is fetched anew at two thirds of its life; a KV secret is read
//! again every `static_secret_render_interval`. A render that fails leaves the old file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};
use sigil_client::Client;

use crate::config::TemplateSection;
use crate::template::{Dep, DepKind, Fetched, Template, render_fetching, signal_of, write_atomic};

/// How long a template's command may run before it is reported (it is not killed).
const COMMAND_WARN_AFTER: Duration = Duration::from_secs(30);
/// The soonest a failed refresh or render is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// What to do with a secret when it is due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Next {
    /// Renew its lease.
    Renew,
    /// Fetch it anew.
    Refetch,
}

/// The templates of one agent and the secrets they read.
pub struct Runner {
    client: Arc<Client>,
    templates: Vec<(TemplateSection, Template)>,
    fetched: Fetched,
    due: BTreeMap<Dep, (Instant, Next)>,
    render_interval: Duration,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("templates", &self.templates.len())
            .finish_non_exhaustive()
    }
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// When `answer` (fetched just now) should be looked at again, and how.
fn schedule(dep: &Dep, answer: &Value, render_interval: Duration) -> (Instant, Next) {
    let now = Instant::now();
    let ttl = answer["lease_duration"].as_u64().unwrap_or(0);
    let leased = answer["lease_id"].as_str().is_some_and(|l| !l.is_empty());
    if leased && ttl > 0 {
        let next = match answer["renewable"].as_bool() {
            Some(true) => Next::Renew,
            _ => Next::Refetch,
        };
        return (now + Duration::from_secs(ttl * 2 / 3), next);
    }
    if dep.kind == DepKind::PkiCert
        && let Some(expires) = answer["data"]["expiration"].as_u64()
    {
        let life = expires.saturating_sub(now_unix());
        return (now + Duration::from_secs(life * 2 / 3), Next::Refetch);
    }
    (now + render_interval, Next::Refetch)
}

impl Runner {
    /// Parses every template (an error names the first that does not parse).
    pub fn new(
        client: Arc<Client>,
        sections: &[TemplateSection],
        render_interval: Duration,
    ) -> Result<Runner, String> {
        let mut templates = Vec::new();
        for s in sections {
            let name = s.destination.display().to_string();
            templates.push((s.clone(), Template::parse(&name, &s.text()?)?));
        }
        Ok(Runner {
            client,
            templates,
            fetched: Fetched::new(),
            due: BTreeMap::new(),
            render_interval,
        })
    }

    async fn fetch(client: &Client, dep: &Dep) -> Result<Value, String> {
        let (method, body) = dep.request();
        let answer = client
            .request(method, &dep.path, body.as_ref())
            .await
            .map_err(|e| e.to_string())?;
        Ok(answer.body.unwrap_or(Value::Null))
    }

    /// Renders every template with what is fetched (fetching what is missing), writes the
    /// files whose output changed and runs their commands. One result per template: whether
    /// its file changed, or why it could not be rendered (its file is left as it was).
    pub async fn render_all(&mut self) -> Vec<Result<bool, String>> {
        let mut results = Vec::new();
        let mut used = BTreeSet::new();
        let mut all_rendered = true;
        for i in 0..self.templates.len() {
            let client = Arc::clone(&self.client);
            let (section, template) = &self.templates[i];
            let mut new = Vec::new();
            let rendered = render_fetching(template, &mut self.fetched, |dep| {
                let client = Arc::clone(&client);
                new.push(dep.clone());
                async move { Self::fetch(&client, &dep).await }
            })
            .await;
            for dep in new {
                if let Some(answer) = self.fetched.get(&dep) {
                    self.due
                        .insert(dep.clone(), schedule(&dep, answer, self.render_interval));
                }
            }
            let result = match rendered {
                Ok((text, read)) => {
                    used.extend(read);
                    apply(section, text.as_bytes())
                }
                Err(e) => {
                    all_rendered = false;
                    Err(e)
                }
            };
            if let Err(e) = &result {
                tracing::warn!(template = %section.destination.display(), error = %e, "not rendered; the file is left as it was");
            }
            results.push(result);
        }
        // Secrets no template reads any more are neither kept nor renewed (known only when
        // every template rendered).
        if all_rendered {
            self.fetched.retain(|d, _| used.contains(d));
            self.due.retain(|d, _| used.contains(d));
        }
        results
    }

    /// Refreshes every secret that is due; whether any changed.
    async fn refresh_due(&mut self) -> bool {
        let now = Instant::now();
        let due: Vec<(Dep, Next)> = self
            .due
            .iter()
            .filter(|(_, (at, _))| *at <= now)
            .map(|(d, (_, n))| (d.clone(), *n))
            .collect();
        let mut changed = false;
        for (dep, next) in due {
            let old = self.fetched.get(&dep).cloned().unwrap_or(Value::Null);
            match next {
                Next::Renew => self.renew(&dep, &old).await,
                Next::Refetch => match Self::fetch(&self.client, &dep).await {
                    Ok(answer) => {
                        self.due
                            .insert(dep.clone(), schedule(&dep, &answer, self.render_interval));
                        changed |= answer["data"] != old["data"];
                        self.fetched.insert(dep, answer);
                    }
                    Err(e) => {
                        tracing::warn!(path = %dep.path, error = %e, "cannot fetch a secret again; retrying");
                        self.due.insert(dep, (now + RETRY, Next::Refetch));
                    }
                },
            }
        }
        changed
    }

    /// Renews `dep`'s lease for its full TTL again; a renewal capped below that (the lease's
    /// max TTL is near) or refused makes the next step a fresh fetch.
    async fn renew(&mut self, dep: &Dep, old: &Value) {
        let ttl = old["lease_duration"].as_u64().unwrap_or(0);
        let lease = old["lease_id"].as_str().unwrap_or_default();
        let body = json!({ "lease_id": lease, "increment": ttl });
        let now = Instant::now();
        let next = match self
            .client
            .request("POST", "sys/leases/renew", Some(&body))
            .await
        {
            Ok(answer) => {
                let got = answer
                    .body
                    .as_ref()
                    .and_then(|b| b["lease_duration"].as_u64())
                    .unwrap_or(0);
                tracing::info!(lease, ttl = got, "lease renewed");
                let next = if got < ttl {
                    Next::Refetch
                } else {
                    Next::Renew
                };
                (now + Duration::from_secs(got * 2 / 3), next)
            }
            Err(e) => {
                tracing::warn!(lease, error = %e, "lease renewal refused; fetching the secret anew");
                (now, Next::Refetch)
            }
        };
        self.due.insert(dep.clone(), next);
    }

    /// When the next secret is due.
    fn next_due(&self) -> Option<Instant> {
        self.due.values().map(|(at, _)| *at).min()
    }

    /// Renders, then keeps every file current until the task is dropped.
    pub async fn run(mut self) {
        let mut failures = 0u32;
        loop {
            let failed = self.render_all().await.iter().any(Result::is_err);
            // A template that did not render (the server unreachable, a secret denied) is
            // tried again soon, then less often: 5 s, 10 s, 20 s … up to the render interval.
            failures = if failed {
                failures.saturating_add(1)
            } else {
                0
            };
            let mut wake = Instant::now() + self.render_interval;
            if failed {
                wake = wake.min(Instant::now() + retry_after(failures));
            }
            if let Some(due) = self.next_due() {
                wake = wake.min(due);
            }
            tokio::time::sleep_until(wake.into()).await;
            self.refresh_due().await;
        }
    }
}

/// How long to wait after the `failures`-th render in a row that failed: 5 s doubling, at most
/// 5 minutes.
fn retry_after(failures: u32) -> Duration {
    RETRY
        .saturating_mul(1 << failures.saturating_sub(1).min(6))
        .min(Duration::from_secs(300))
}

/// Writes the rendered output of `section` if it changed, and then runs its command or
/// signals its process.
fn apply(section: &TemplateSection, output: &[u8]) -> Result<bool, String> {
    let mode = section.mode()?;
    let changed = write_atomic(&section.destination, output, mode)
        .map_err(|e| format!("cannot write {}: {e}", section.destination.display()))?;
    if changed {
        tracing::info!(file = %section.destination.display(), "rendered");
        if let Some(command) = &section.command {
            run_command(command.clone(), section.destination.clone());
        }
        if let Some(pid_file) = &section.pid_file {
            signal(pid_file, section.signal.as_deref().unwrap_or("SIGHUP"))?;
        }
    }
    Ok(changed)
}

/// Runs `command` with `sh -c` in the background and reports how it ended.
fn run_command(command: String, file: PathBuf) {
    std::thread::spawn(move || {
        let started = Instant::now();
        let status = std::process::Command::new("sh")
            .arg("-c")
            .arg(&command)
            .stdin(std::process::Stdio::null())
            .status();
        let took = started.elapsed();
        if took > COMMAND_WARN_AFTER {
            tracing::warn!(%command, secs = took.as_secs(), "the template's command ran long");
        }
        match status {
            Ok(s) if s.success() => {
                tracing::info!(%command, file = %file.display(), "command ran");
            }
            Ok(s) => tracing::warn!(%command, status = %s, "the template's command failed"),
            Err(e) => tracing::warn!(%command, error = %e, "cannot run the template's command"),
        }
    });
}

fn signal(pid_file: &std::path::Path, name: &str) -> Result<(), String> {
    let text = std::fs::read_to_string(pid_file)
        .map_err(|e| format!("cannot read {}: {e}", pid_file.display()))?;
    let pid = text
        .trim()
        .parse::<i32>()
        .ok()
        .and_then(rustix::process::Pid::from_raw)
        .ok_or_else(|| format!("{} holds no process id", pid_file.display()))?;
    rustix::process::kill_process(pid, signal_of(name)?)
        .map_err(|e| format!("cannot signal process {}: {e}", pid.as_raw_nonzero()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(kind: DepKind) -> Dep {
        Dep {
            kind,
            path: "p".into(),
            args: Vec::new(),
        }
    }

    #[test]
    fn failed_renders_are_retried_with_a_growing_wait() {
        let secs: Vec<u64> = (1..=9).map(|n| retry_after(n).as_secs()).collect();
        assert_eq!(secs, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }

    #[test]
    fn leases_are_renewed_at_two_thirds_and_certificates_reissued() {
        let minute = Duration::from_secs(60);
        let (at, next) = schedule(
            &dep(DepKind::Secret),
            &json!({ "lease_id": "db/creds/x/1", "lease_duration": 300, "renewable": true }),
            minute,
        );
        assert_eq!(next, Next::Renew);
        let secs = at.duration_since(Instant::now()).as_secs();
        assert!((198..=200).contains(&secs), "{secs}");
        let (_, next) = schedule(
            &dep(DepKind::Secret),
            &json!({ "lease_id": "x", "lease_duration": 300, "renewable": false }),
            minute,
        );
        assert_eq!(next, Next::Refetch);
        let (at, next) = schedule(
            &dep(DepKind::PkiCert),
            &json!({ "data": { "expiration": now_unix() + 3000 } }),
            minute,
        );
        assert_eq!(next, Next::Refetch);
        let secs = at.duration_since(Instant::now()).as_secs();
        assert!((1998..=2000).contains(&secs), "{secs}");
        let (at, _) = schedule(&dep(DepKind::Secret), &json!({ "data": {} }), minute);
        assert!(at.duration_since(Instant::now()) > Duration::from_secs(58));
    }
}
