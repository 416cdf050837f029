//! Command-line grammar. Vault-style single-dash long flags (`-field=x`) are accepted too.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Sigil: secrets management where keys replace tokens.
#[derive(Debug, Parser)]
#[command(name = "sigil", version, about)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Print Sigil's version (as `sigil --version`).
    Version,
    /// Print a shell completion script (`sigil completion bash > /etc/bash_completion.d/sigil`).
    Completion {
        /// The shell: bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// The server's state, as `vault status`: sealed or not, seal settings, version, storage
    /// (exit 2 when sealed). No key needed.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Generate and inspect identity keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Run a Sigil server.
    Server(ServerArgs),
    /// Manage identities (admin).
    #[command(subcommand)]
    Identity(IdentityCommand),
    /// Manage groups of identities (admin).
    #[command(subcommand)]
    Group(GroupCommand),
    /// Manage ACL policies (admin).
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Read and write secrets in a KV version 2 mount.
    #[command(subcommand)]
    Kv(KvCommand),
    /// Enable, disable, list and tune secrets engines (the mount table).
    #[command(subcommand)]
    Secrets(SecretsCommand),
    /// End-to-end secrets: encrypted on this machine to their recipients; the server cannot
    /// read them.
    #[command(subcommand)]
    E2e(E2eCommand),
    /// Wrap data for one recipient, once: `sigil wrap --to bob FILE`; `sigil wrap status ID`.
    Wrap(WrapArgs),
    /// Fetch and open a wrap addressed to you (it is gone afterwards).
    Unwrap {
        /// The wrap id (not with --saved).
        #[arg(required_unless_present = "saved")]
        id: Option<String>,
        /// Open a wrap fetched earlier and saved because its sender was not trusted then
        /// (the file `sigil unwrap` named), instead of fetching one.
        #[arg(long, value_name = "FILE", conflicts_with = "id")]
        saved: Option<std::path::PathBuf>,
        /// Output format (for a wrapped response).
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Init, unseal, seal, status and keyring maintenance.
    #[command(subcommand)]
    Operator(OperatorCommand),
    /// Check audit logs and compute audit hashes.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Renew, revoke, look up and list the leases of dynamic secrets.
    #[command(subcommand)]
    Lease(LeaseCommand),
    /// Run the agent: a Vault-compatible local API for unchanged Vault clients, and templates
    /// rendered to files and kept current (docs/agent.md).
    Agent {
        /// The agent's configuration file (TOML).
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
    },
    /// Serve the Kubernetes Secrets Store CSI driver's provider API (gRPC) on a Unix socket,
    /// reading secrets as this key's identity (docs/agent.md).
    CsiProvider {
        /// The socket the driver calls.
        #[arg(
            long,
            default_value = "/etc/kubernetes/secrets-store-csi-providers/sigil.sock"
        )]
        socket: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Run a command with secrets in its environment, never written to disk:
    /// `sigil run --env DB_PASSWORD=secret/app#password -- ./server`.
    Run(RunArgs),
    /// Render a template once: `sigil inject -i config.tpl -o config.yaml` (stdin and stdout
    /// by default; the file is written whole, mode 0600).
    Inject {
        /// The template (Vault Agent / consul-template syntax).
        #[arg(short = 'i', long = "in")]
        input: Option<PathBuf>,
        /// Where the output goes.
        #[arg(short = 'o', long = "out")]
        output: Option<PathBuf>,
        /// The output file's mode, octal.
        #[arg(long, default_value = "0600")]
        perms: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Read any path (as `vault read`).
    Read {
        /// The path below /v1/.
        path: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Print only this field of the answer's data.
        #[arg(long)]
        field: Option<String>,
        #[command(flatten)]
        stale: StaleRead,
        #[command(flatten)]
        wrap: ResponseWrap,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Write to any path: `key=value`, `key=@FILE`, or `-` for a JSON object on stdin.
    Write {
        /// The path below /v1/.
        path: String,
        /// `key=value` pairs, or `-`.
        pairs: Vec<String>,
        /// Write even with no data (Vault's `-force`; endpoints such as `sys/rotate` take none).
        #[arg(short = 'f', long = "force")]
        force: bool,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// Print only this field of the answer's data.
        #[arg(long)]
        field: Option<String>,
        #[command(flatten)]
        wrap: ResponseWrap,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List below any path.
    List {
        /// The path below /v1/.
        path: String,
        #[command(flatten)]
        show: ListArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete any path.
    Delete {
        /// The path below /v1/.
        path: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// `sigil run`.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// `NAME=PATH#FIELD`: the variable NAME gets FIELD of the secret at PATH (`secret/app` in
    /// a KV mount as `sigil kv get` takes it, or any API path).
    #[arg(long = "env", value_name = "NAME=PATH#FIELD")]
    pub(crate) env: Vec<String>,
    /// A template whose output is `NAME=value` lines (`{{ with secret "secret/data/app" }}`…).
    #[arg(long = "env-file", value_name = "FILE")]
    pub(crate) env_file: Vec<PathBuf>,
    /// Read the secrets again every --interval and restart the command when one changed.
    #[arg(long)]
    pub(crate) watch: bool,
    /// How often --watch reads the secrets (Go duration).
    #[arg(long, default_value = "5m")]
    pub(crate) interval: String,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "COMMAND")]
    pub(crate) command: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum LeaseCommand {
    /// Renew a lease: `sigil lease renew [-increment=1h] ID` (never past its max TTL).
    Renew {
        /// The lease id.
        id: String,
        /// How long from now the lease should last (default: the TTL it was issued with).
        #[arg(long)]
        increment: Option<String>,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Revoke a lease now; with -prefix, every lease under a path (sudo).
    Revoke {
        /// The lease id, or with -prefix a path such as database/creds/app.
        id: String,
        /// Revoke every lease whose id starts with the path.
        #[arg(long)]
        prefix: bool,
        /// With -prefix: forget leases whose secret cannot be revoked (a database that is
        /// gone). The secrets may still work; revoke them by hand.
        #[arg(long, requires = "prefix")]
        force: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A lease's issue and expire times, TTL and whether it is renewable.
    Lookup {
        /// The lease id.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Lease ids under a prefix (sudo), as `vault list sys/leases/lookup/PREFIX`.
    List {
        /// A path such as database/creds/app.
        prefix: String,
        #[command(flatten)]
        show: ListArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Drop unreadable lease entries and reload the expiry queue (sudo).
    Tidy {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AuditCommand {
    /// Check an audit log's hash chain and signed checkpoints; names the first bad line.
    Verify {
        /// The log file, or several files of one log oldest first (`audit.log.2 audit.log.1
        /// audit.log`): each file's first line must continue the previous file's last; a
        /// missing or misplaced file is named.
        #[arg(required = true, num_args = 1..)]
        files: Vec<PathBuf>,
        /// With one PATH: verify the files a rotating device wrote, `PATH.N` … `PATH.1` then
        /// `PATH`, as one log.
        #[arg(long)]
        rotated: bool,
        /// The server key that must sign the checkpoints: its keyid (as SIGIL_SERVER_KEY) or
        /// its `sigil1…` identity.
        #[arg(
            long = "server-key",
            env = "SIGIL_SERVER_KEY",
            value_name = "KEYID|sigil1…",
            allow_hyphen_values = true
        )]
        server: Option<String>,
        /// The (first) file continues an earlier log (its first line links to a line not in it).
        #[arg(long)]
        continued: bool,
        /// Fail unless every line is vouched for by a signed checkpoint (for a closed log;
        /// without it a live log's newest lines, after the last checkpoint, are reported and
        /// accepted).
        #[arg(long)]
        strict: bool,
    },
    /// The HMAC of a value as device NAME records it, to search its log.
    Hash {
        /// The audit device.
        #[arg(long)]
        device: String,
        /// The value.
        value: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum OperatorCommand {
    /// Initialize a new server with its admins' public keys. Prints no secret: each admin's
    /// share of the root key is sealed to that admin.
    Init {
        #[command(flatten)]
        set: AdminSet,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Submit your unseal share (uses SIGIL_KEY).
    Unseal {
        /// Discard the shares submitted so far (as `vault operator unseal -reset`); they are
        /// also discarded 10 minutes after the first one if the quorum is not reached.
        #[arg(long)]
        reset: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Seal the server (admin, sudo).
    Seal {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the seal status.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Reload the server as SIGHUP does: the TLS certificate and key, limits and log level
    /// from its configuration file, and its audit devices reopened (sudo on sys/reload).
    Reload {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Take a backup: a snapshot of the whole storage at one instant while the server runs
    /// (sudo on sys/storage/snapshot), written to FILE (0600). The file holds barrier
    /// ciphertext and is signed by the server key; only the admins can make use of it.
    Backup {
        /// Where to write it (refused if it exists).
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore a backup into the data directory of a stopped or new node (no server needed):
    /// checks the file, refuses a directory that holds data, writes every entry. Start the
    /// server there: it is sealed until the backup's admins unseal it.
    Restore {
        /// The backup file.
        file: PathBuf,
        /// The data directory to restore into (created 0700).
        #[arg(
            long,
            value_name = "DIR",
            required_unless_present = "config",
            conflicts_with = "config"
        )]
        data_dir: Option<PathBuf>,
        /// Or the server's configuration file: its [storage] path.
        #[arg(short = 'c', long = "config", value_name = "FILE")]
        config: Option<PathBuf>,
        /// The server key that must have signed the backup: a keyid or `sigil1…`.
        #[arg(
            long = "server-key",
            env = "SIGIL_SERVER_KEY",
            value_name = "KEYID|sigil1…",
            allow_hyphen_values = true
        )]
        server_key: Option<String>,
    },
    /// Add a new keyring term; new writes use it, older terms keep decrypting.
    Rotate {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Re-encrypt every entry under the newest keyring term.
    Rewrap {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the keyring's terms and how many entries each encrypts.
    KeyStatus {
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change the admins and/or the threshold, with approvals from current admins.
    #[command(subcommand)]
    Rekey(RekeyCommand),
    /// Integrated Raft storage: the cluster's peers; admitting and removing nodes.
    #[command(subcommand)]
    Raft(RaftCommand),
    /// Hand the cluster's leadership to another voter (sudo on sys/step-down).
    StepDown {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum RaftCommand {
    /// List the cluster's members: name, address, state, voter, last contact, index.
    ListPeers {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Admit a node that asked to join (sudo): it receives the root key sealed to it and
    /// becomes a voter once it has caught up.
    Approve {
        /// The node's name (its `--node-id`).
        node_id: String,
        /// The fingerprint the node printed when it asked; the approval fails if its request
        /// carries another one.
        #[arg(long)]
        fingerprint: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Remove a node from the cluster (sudo).
    RemovePeer {
        /// The node's name.
        node_id: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Autopilot: the members' health, and dead-server cleanup.
    #[command(subcommand)]
    Autopilot(AutopilotCommand),
    /// Snapshots of the whole storage: save one from a running cluster, restore one into a
    /// new cluster.
    #[command(subcommand)]
    Snapshot(SnapshotCommand),
}

#[derive(Debug, Subcommand)]
pub(crate) enum SnapshotCommand {
    /// Save a snapshot of the whole storage at one instant (sudo on
    /// sys/storage/raft/snapshot): checked (checksum, signed by the pinned server key) and
    /// written 0600; refuses to overwrite FILE.
    Save {
        /// Where to write it.
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore a snapshot. Into a new cluster before it is initialized (no key needed, as for
    /// init): it is then sealed with the snapshot's admins and server key. Over a running
    /// cluster (sudo on sys/storage/raft/snapshot): only a snapshot of this cluster, taken
    /// since its last rekey; it is staged and runs once a threshold of the seal admins run
    /// `sigil operator raft snapshot approve DIGEST`.
    Restore {
        /// The snapshot (or a `sigil operator backup` file).
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve the staged restore as a seal admin (signed with your admin key); the last
    /// approval needed carries it out.
    Approve {
        /// The staged restore's digest, as `restore` printed it (or
        /// `sigil read sys/storage/raft/snapshot/restore` shows it). Base64url: it may
        /// begin with `-`.
        #[arg(allow_hyphen_values = true)]
        digest: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AutopilotCommand {
    /// Each member's health, the failure tolerance and the voters.
    State {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The dead-server cleanup settings.
    GetConfig {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change the dead-server cleanup settings (sudo); the flags given replace the stored
    /// values.
    SetConfig {
        /// Remove voters silent for longer than the threshold.
        #[arg(long)]
        cleanup_dead_servers: Option<bool>,
        /// How long a voter may be silent before it is removed (`24h`, `90s`).
        #[arg(long, value_name = "DURATION")]
        dead_server_last_contact_threshold: Option<String>,
        /// Never remove a voter when fewer than this many would remain.
        #[arg(long, value_name = "N")]
        min_quorum: Option<u32>,
        /// A voter silent for longer than this is reported unhealthy.
        #[arg(long, value_name = "DURATION")]
        last_contact_threshold: Option<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// An admin set and its unseal threshold (init, rekey).
#[derive(Debug, Args)]
pub(crate) struct AdminSet {
    /// An admin: a `sigil1…` string, or a file holding one (or a key file). Repeat.
    #[arg(long = "admin", value_name = "sigil1…|FILE", required = true)]
    pub(crate) admins: Vec<String>,
    /// How many admins must take part in an unseal.
    #[arg(long, default_value_t = 1)]
    pub(crate) threshold: u8,
}

#[derive(Debug, Subcommand)]
pub(crate) enum RekeyCommand {
    /// Propose a new admin set and threshold (admin, sudo).
    Init {
        #[command(flatten)]
        set: AdminSet,
        /// Seconds the proposal stays open for approvals.
        #[arg(long, default_value_t = 3600)]
        ttl: i64,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show the open proposal.
    Status {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Approve the open proposal as a current admin (uses SIGIL_KEY). Pass the digest you
    /// reviewed: a different proposal is not approved.
    Approve {
        /// The proposal's digest, as shown by `rekey status` (base64url: it may begin
        /// with `-`).
        #[arg(long, required = true, allow_hyphen_values = true)]
        digest: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Cancel the open proposal (admin, sudo).
    Cancel {
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum KeyCommand {
    /// Generate a new identity key pair.
    Generate {
        /// Write the key file here (mode 0600; an existing file is never overwritten) and
        /// print the public identity. Without it, the key file goes to standard output.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
        /// Protect the key file with a passphrase (asked twice on the terminal, or read from
        /// the file named by SIGIL_KEY_PASSPHRASE_FILE): age's scrypt encryption, armored.
        /// Every command that reads the key asks for it (or reads that file).
        #[arg(long)]
        passphrase: bool,
    },
    /// Add, change or remove a key file's passphrase (in place, atomically). The current
    /// passphrase is asked (or read from SIGIL_KEY_PASSPHRASE_FILE), the new one asked twice
    /// (or read from SIGIL_KEY_NEW_PASSPHRASE_FILE).
    Passwd {
        /// The key file.
        file: PathBuf,
        /// Remove the passphrase: store the key file in plain text again (mode 0600).
        #[arg(long)]
        remove: bool,
    },
    /// Print the public identity (`sigil1…`) of a key file (or of a file holding one).
    Public {
        /// The key file, or a public key file (`sigil1…` on its first line that is not a
        /// `#` comment).
        file: PathBuf,
    },
    /// Export a key file's encryption key as an age identity (`AGE-SECRET-KEY-1…`), so the
    /// age tools can open end-to-end secrets and wraps encrypted to it.
    ExportAge {
        /// The key file.
        file: PathBuf,
        /// Write the identity here (mode 0600, never overwritten) instead of standard output.
        #[arg(short = 'o', long = "output")]
        output: Option<PathBuf>,
    },
}

#[derive(Debug, Args, Clone)]
pub(crate) struct ServerArgs {
    /// Keep everything in memory: nothing but the CA certificate (and a first-run admin key)
    /// is written to disk. Security is the same as in any other mode.
    #[arg(long, conflicts_with_all = ["data_dir", "config"])]
    pub(crate) transient: bool,
    /// A configuration file (TOML; see docs/configuration.md).
    #[arg(short = 'c', long = "config", value_name = "FILE", conflicts_with_all = ["data_dir", "listen", "tls_sans"])]
    pub(crate) config: Option<PathBuf>,
    /// Persistent mode: the embedded file storage (`DIR/sigil.redb`) and a TLS CA kept in
    /// `DIR/tls/`. A new server waits for `sigil operator init`; a restarted one is sealed.
    #[arg(long, value_name = "DIR")]
    pub(crate) data_dir: Option<PathBuf>,
    /// Address to listen on: `IP:PORT` or `NAME:PORT` (`localhost:8200`; a name is resolved
    /// once, IPv4 first).
    #[arg(long, default_value = "127.0.0.1:8200", value_parser = listen_addr)]
    pub(crate) listen: SocketAddr,
    /// Transient mode: an admin's public identity, a `sigil1…` string or a file holding one
    /// (or a key file). Repeat for several admins. Without it a new admin key file is generated.
    #[arg(long = "admin", value_name = "sigil1…|FILE", requires = "transient")]
    pub(crate) admins: Vec<String>,
    /// Transient mode: directory for the CA certificate and a generated admin key (default: a
    /// new private directory under $TMPDIR).
    #[arg(long, requires = "transient")]
    pub(crate) dir: Option<PathBuf>,
    /// Serve Prometheus metrics in plain HTTP at `ADDR/metrics` (counts only, no secrets;
    /// keep it on loopback or a private network).
    #[arg(long, value_name = "ADDR")]
    pub(crate) metrics_listen: Option<SocketAddr>,
    /// Log format: `text` or `json` (one JSON object per line).
    #[arg(long, env = "SIGIL_LOG_FORMAT", default_value = "text", value_parser = ["text", "json"])]
    pub(crate) log_format: String,
    /// Requests per second each identity may make (burst: twice that).
    #[arg(long, value_name = "RATE")]
    pub(crate) limit_identity: Option<f64>,
    /// The largest request body in bytes, as sent (default 32 MiB; `[limits]
    /// max_request_bytes`).
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_request_bytes: Option<usize>,
    /// Requests per second from each source address.
    #[arg(long, value_name = "RATE")]
    pub(crate) limit_address: Option<f64>,
    /// Requests per second from each source address to the unauthenticated endpoints.
    #[arg(long, value_name = "RATE")]
    pub(crate) limit_unauthenticated: Option<f64>,
    /// Failed authentications per second from each source address before it is refused.
    #[arg(long, value_name = "RATE")]
    pub(crate) limit_auth_failures: Option<f64>,
    /// Write an audit log to this file (device name `file`). Every request is refused if it
    /// cannot be recorded.
    #[arg(long, value_name = "PATH")]
    pub(crate) audit_file: Option<PathBuf>,
    /// Run even if memory cannot be locked (secrets could then be swapped to disk). Without it
    /// the server refuses to start when `mlockall` fails.
    #[arg(long)]
    pub(crate) allow_unlocked_memory: bool,
    /// Extra DNS name or IP address for the server certificate.
    #[arg(long = "tls-san", value_name = "NAME")]
    pub(crate) tls_sans: Vec<String>,
    /// Raft: run as a cluster node with this name (with --data-dir or `[storage] type =
    /// "raft"`). A node in no cluster starts one, or asks to join one with --join.
    #[arg(long, value_name = "ID", conflicts_with = "transient")]
    pub(crate) node_id: Option<String>,
    /// Raft: where the cluster listener binds (node-to-node traffic, mutual TLS); default:
    /// the API port + 1 on the same address.
    #[arg(long, value_name = "ADDR", value_parser = listen_addr, requires = "node_id")]
    pub(crate) cluster_listen: Option<SocketAddr>,
    /// Raft: ask the cluster member at this API address (`https://host:port`) to admit this
    /// node; an admin approves (`sigil operator raft approve ID`). Its CA is SIGIL_CACERT.
    #[arg(long, value_name = "API_URL", requires = "node_id")]
    pub(crate) join: Option<String>,
}

/// How to reach the server; each flag falls back to its environment variable.
#[derive(Debug, Args, Clone)]
pub(crate) struct ClientArgs {
    /// Server address.
    #[arg(
        long,
        env = "SIGIL_ADDR",
        default_value = "https://127.0.0.1:8200",
        global = true
    )]
    pub(crate) addr: String,
    /// Your key file.
    #[arg(long = "key", env = "SIGIL_KEY", global = true)]
    pub(crate) key: Option<PathBuf>,
    /// CA certificate to trust (PEM).
    #[arg(long = "ca-cert", env = "SIGIL_CACERT", global = true)]
    pub(crate) ca_cert: Option<PathBuf>,
    /// The keyid of the server's key, as printed at server start.
    #[arg(
        long = "server-key",
        env = "SIGIL_SERVER_KEY",
        global = true,
        allow_hyphen_values = true
    )]
    pub(crate) server_key: Option<String>,
    /// Print the policy (HCL) that the command's request needs instead of sending it, as
    /// Vault's -output-policy. Only a mount lookup is sent.
    #[arg(long = "output-policy", global = true)]
    pub(crate) output_policy: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum IdentityCommand {
    /// Create or update an identity.
    Create {
        /// Its name.
        name: String,
        /// Its public identity: `sigil1…`, a public key file (`sigil key public KEY > FILE`) or a
        /// key file (its public half is used).
        #[arg(long = "public-key")]
        public_key: String,
        /// A policy to attach; repeat for several.
        #[arg(long = "policy")]
        policies: Vec<String>,
        /// Metadata `key=value` (for `{{identity.metadata.<key>}}` policy templates); repeat.
        #[arg(long = "metadata", value_name = "KEY=VALUE")]
        metadata: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Certify an identity's key with your (admin) key, so clients accept it as a recipient.
    /// You give the key you expect; the command refuses if the server holds another one.
    Certify {
        /// Its name.
        name: String,
        /// The public identity you expect it to have: `sigil1…` or a file holding one.
        #[arg(long = "public-key")]
        public_key: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List identities.
    List {
        #[command(flatten)]
        show: ListArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show an identity.
    Read {
        /// Its name.
        name: String,
        #[command(flatten)]
        show: ShowArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete an identity.
    Delete {
        /// Its name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum GroupCommand {
    /// Create or update a group (given lists replace the stored ones).
    Create {
        /// Its name.
        name: String,
        /// A policy every member holds; repeat for several.
        #[arg(long = "policy")]
        policies: Vec<String>,
        /// A member identity's name; repeat for several.
        #[arg(long = "member")]
        members: Vec<String>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List groups.
    List {
        #[command(flatten)]
        show: ListArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Show a group.
    Read {
        /// Its name.
        name: String,
        #[command(flatten)]
        show: ShowArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a group.
    Delete {
        /// Its name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Write a policy from a file, or `-` for standard input.
    Write {
        /// Its name.
        name: String,
        /// HCL file, or `-`.
        file: PathBuf,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Check a policy file with the server's parser and lay it out canonically, in place
    /// (comments kept; a JSON policy is only checked). No server needed.
    Fmt {
        /// The policy file.
        file: PathBuf,
    },
    /// Print a policy (its HCL text; `-format=json|yaml` for name and text).
    Read {
        /// Its name.
        name: String,
        #[command(flatten)]
        show: ShowArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List policies.
    List {
        #[command(flatten)]
        show: ListArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Delete a policy.
    Delete {
        /// Its name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Which version of a secret to read, and how to print it.
#[derive(Debug, Args)]
pub(crate) struct VersionRead {
    /// Print only this field's value.
    #[arg(long)]
    pub(crate) field: Option<String>,
    /// Read this version.
    #[arg(long)]
    pub(crate) version: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
}

/// The keys whose certifications you accept.
#[derive(Debug, Args)]
pub(crate) struct TrustArgs {
    /// Keyids (or `sigil1…` keys) of the admins whose certifications you accept, comma
    /// separated. Your own key is always trusted.
    #[arg(
        long = "trust",
        env = "SIGIL_TRUST",
        value_delimiter = ',',
        allow_hyphen_values = true
    )]
    pub(crate) trust: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum E2eCommand {
    /// Encrypt `key=value` pairs to the recipients (and you), sign, and store a new version.
    Put {
        #[command(flatten)]
        at: KvPathArgs,
        /// A recipient: an identity name, `group:NAME`, or a `sigil1…` key; repeat.
        #[arg(long = "to", required = true)]
        to: Vec<String>,
        /// `key=value` pairs; `key=@FILE` reads the value from a file.
        #[arg(required = true)]
        pairs: Vec<String>,
        /// Check-and-set: the current version (0 = must not exist).
        #[arg(long)]
        cas: Option<u64>,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Fetch, check and decrypt a version.
    Get {
        #[command(flatten)]
        at: KvPathArgs,
        #[command(flatten)]
        read: VersionRead,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub(crate) struct WrapArgs {
    #[command(subcommand)]
    pub(crate) status: Option<WrapStatus>,
    /// The recipient: an identity name or a `sigil1…` key.
    #[arg(long, required = true)]
    pub(crate) to: Option<String>,
    /// How long the wrap waits to be fetched (`30s`, `5m`, `1h`; default 5m, at most 30 days).
    #[arg(long)]
    pub(crate) ttl: Option<String>,
    /// The file to wrap; `-` or nothing: standard input.
    pub(crate) input: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) trust: TrustArgs,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum WrapStatus {
    /// Whether a wrap is pending, consumed (when and by which key) or expired.
    Status {
        /// The wrap id.
        id: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretsCommand {
    /// Mount an engine: `sigil secrets enable [-path=P] kv|e2e|transit|pki|database`.
    Enable {
        /// Where to mount it (default: the engine type).
        #[arg(long)]
        path: Option<String>,
        /// A description shown by `secrets list`.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        ttls: MountTtls,
        /// The engine: `kv` (version 2; `kv-v2` is accepted too), `e2e` (end-to-end
        /// encrypted KV), `transit`, `pki` or `database`.
        r#type: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Unmount an engine and delete all of its data.
    Disable {
        /// The mount path.
        path: String,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// The mounted engines.
    List {
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        /// More columns: lease TTLs and options (as Vault's -detailed).
        #[arg(long)]
        detailed: bool,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Change a mount's description or lease TTLs.
    Tune {
        /// A new description.
        #[arg(long)]
        description: Option<String>,
        #[command(flatten)]
        ttls: MountTtls,
        /// The mount path.
        path: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// A mount's lease TTLs (`30m`, `1h`, `768h`, or seconds).
#[derive(Debug, Args)]
pub(crate) struct MountTtls {
    /// Default lease TTL of the mount's dynamic secrets.
    #[arg(long)]
    pub(crate) default_lease_ttl: Option<String>,
    /// Maximum lease TTL of the mount's dynamic secrets.
    #[arg(long)]
    pub(crate) max_lease_ttl: Option<String>,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub(crate) enum Format {
    Table,
    Json,
    Yaml,
}

/// How to print an answer's data: `-format` and `-field`.
#[derive(Debug, Args, Clone)]
pub(crate) struct ShowArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    /// Print only this field of the answer's data.
    #[arg(long)]
    pub(crate) field: Option<String>,
}

/// Response wrapping (`-wrap-to`, `-wrap-ttl`), as Vault's `-wrap-ttl`.
#[derive(Debug, Args, Clone)]
pub(crate) struct ResponseWrap {
    /// Response wrapping: the server encrypts the answer to this identity (name or keyid)
    /// and stores it as a one-time wrap; you get only the wrap id.
    #[arg(long, allow_hyphen_values = true)]
    pub(crate) wrap_to: Option<String>,
    /// The wrap's time to live (default 5m).
    #[arg(long, requires = "wrap_to")]
    pub(crate) wrap_ttl: Option<String>,
}

/// `-stale`: a read a cluster follower may answer itself.
#[derive(Debug, Args, Clone, Copy)]
pub(crate) struct StaleRead {
    /// Let the cluster node you reach answer from its own storage (`?stale=true`, signed with
    /// the request): no hop to the leader, works while there is none, may miss the last
    /// moments' writes. Reads only.
    #[arg(long)]
    pub(crate) stale: bool,
}

/// How to print a list: `-format`.
#[derive(Debug, Args, Clone)]
pub(crate) struct ListArgs {
    /// Output format (`json` and `yaml` print the keys as a list).
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
}

#[derive(Debug, Args, Clone)]
pub(crate) struct KvPathArgs {
    /// The mount (default: the first segment of the path).
    #[arg(long)]
    pub(crate) mount: Option<String>,
    /// `mount/path`, or `path` with `-mount`.
    pub(crate) path: String,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KvCommand {
    /// Write a new version: `sigil kv put secret/app k=v k2=@file`.
    Put(KvWriteArgs),
    /// Write a new version that merges the pairs into the latest one (`key=` with no value
    /// is kept as an empty string; use the API's JSON merge patch with `null` to remove).
    Patch(KvWriteArgs),
    /// Read the latest (or `-version`) version.
    Get {
        #[command(flatten)]
        at: KvPathArgs,
        #[command(flatten)]
        read: VersionRead,
        #[command(flatten)]
        stale: StaleRead,
        #[command(flatten)]
        wrap: ResponseWrap,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// List keys under a path.
    List(KvShowArgs),
    /// Soft-delete the latest version, or the `-versions` listed.
    Delete {
        #[command(flatten)]
        at: KvPathArgs,
        /// Comma-separated versions to soft-delete (default: the latest).
        #[arg(long, value_delimiter = ',')]
        versions: Vec<u64>,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// Restore soft-deleted versions.
    Undelete(KvVersionsArgs),
    /// Permanently remove versions' data (their metadata stays, marked destroyed).
    Destroy(KvVersionsArgs),
    /// Write an older version's data again as the newest version (checked-and-set against
    /// the current version, as `vault kv rollback`).
    Rollback {
        #[command(flatten)]
        at: KvPathArgs,
        /// The version whose data becomes the newest.
        #[arg(long, required = true)]
        version: u64,
        /// Output format.
        #[arg(long, value_enum, default_value = "table")]
        format: Format,
        #[command(flatten)]
        client: ClientArgs,
    },
    /// A secret's metadata: `get`, `put`, `patch` (its settings and custom metadata) or
    /// `delete` (every version and the metadata).
    #[command(subcommand)]
    Metadata(KvMetadataCommand),
}

/// A new version's data.
#[derive(Debug, Args)]
pub(crate) struct KvWriteArgs {
    #[command(flatten)]
    pub(crate) at: KvPathArgs,
    /// `key=value` pairs; `key=@FILE` reads the value from a file.
    #[arg(required = true)]
    pub(crate) pairs: Vec<String>,
    /// Check-and-set: the current version (0 = must not exist).
    #[arg(long)]
    pub(crate) cas: Option<u64>,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// Settings of a secret's metadata.
#[derive(Debug, Args)]
pub(crate) struct KvMetadataWriteArgs {
    #[command(flatten)]
    pub(crate) at: KvPathArgs,
    /// Versions to keep (0: the engine's setting).
    #[arg(long)]
    pub(crate) max_versions: Option<u64>,
    /// Require check-and-set on every write.
    #[arg(long)]
    pub(crate) cas_required: Option<bool>,
    /// New versions count as deleted after this long (`30m`, `24h`; `0s`: never).
    #[arg(long)]
    pub(crate) delete_version_after: Option<String>,
    /// `key=value`, repeatable.
    #[arg(long)]
    pub(crate) custom_metadata: Vec<String>,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// A path to show, and how.
#[derive(Debug, Args)]
pub(crate) struct KvShowArgs {
    #[command(flatten)]
    pub(crate) at: KvPathArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "table")]
    pub(crate) format: Format,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

/// A secret and the versions an action applies to.
#[derive(Debug, Args)]
pub(crate) struct KvVersionsArgs {
    #[command(flatten)]
    pub(crate) at: KvPathArgs,
    /// Comma-separated versions.
    #[arg(long, value_delimiter = ',', required = true)]
    pub(crate) versions: Vec<u64>,
    #[command(flatten)]
    pub(crate) client: ClientArgs,
}

#[derive(Debug, Subcommand)]
pub(crate) enum KvMetadataCommand {
    /// Show the metadata and every version's times and state.
    Get(KvShowArgs),
    /// Create or replace settings of a secret's metadata (only the flags given change;
    /// `-custom-metadata` replaces all custom metadata).
    Put(KvMetadataWriteArgs),
    /// Change the named settings; `-custom-metadata` pairs are merged into the existing ones.
    Patch(KvMetadataWriteArgs),
    /// Delete the secret: every version and its metadata.
    Delete {
        #[command(flatten)]
        at: KvPathArgs,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Rewrites Vault-style `-name[=value]` (a single dash and a multi-letter name) to
/// `--name[=value]`, up to a `--` terminator, so `sigil kv get -field=password secret/app`
/// works as it does with `vault`.
pub(crate) fn vault_style_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut done = false;
    args.into_iter()
        .map(|arg| {
            if done {
                return arg;
            }
            let Some(text) = arg.to_str() else {
                return arg;
            };
            if text == "--" {
                done = true;
                return arg;
            }
            let name = text.strip_prefix('-').filter(|r| !r.starts_with('-'));
            let name = name.map(|r| r.split('=').next().unwrap_or(""));
            match name {
                Some(n)
                    if n.len() > 1 && n.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') =>
                {
                    OsString::from(format!("-{text}"))
                }
                _ => arg,
            }
        })
        .collect()
}

/// `--listen`: a socket address, or a name and port resolved to one (IPv4 preferred, as the
/// default listens on IPv4 loopback).
fn listen_addr(text: &str) -> Result<SocketAddr, String> {
    use std::net::ToSocketAddrs as _;
    if let Ok(addr) = text.parse() {
        return Ok(addr);
    }
    if !text.contains(':') {
        return Err("expected HOST:PORT (e.g. 127.0.0.1:8200 or localhost:8200)".into());
    }
    let all: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {text}: {e}"))?
        .collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| format!("{text} resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(args: &[&str]) -> Vec<String> {
        vault_style_flags(args.iter().map(OsString::from))
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect()
    }

    #[test]
    fn single_dash_long_flags_become_double() {
        assert_eq!(
            rewrite(&[
                "sigil",
                "kv",
                "get",
                "-field=password",
                "-format",
                "json",
                "secret/app"
            ]),
            vec![
                "sigil",
                "kv",
                "get",
                "--field=password",
                "--format",
                "json",
                "secret/app"
            ]
        );
        assert_eq!(
            rewrite(&["sigil", "key", "generate", "-o", "k"]),
            vec!["sigil", "key", "generate", "-o", "k"]
        );
        assert_eq!(
            rewrite(&["sigil", "kv", "put", "secret/a", "--", "-xy=1"]),
            vec!["sigil", "kv", "put", "secret/a", "--", "-xy=1"]
        );
        assert_eq!(
            rewrite(&["sigil", "kv", "put", "secret/a", "k=-v"]),
            vec!["sigil", "kv", "put", "secret/a", "k=-v"]
        );
    }

    /// Digests and keyids are base64url, so one in 32 begins with `-`: the CLI takes them
    /// as values wherever they are asked for (CI once failed on a digest `-r…`).
    #[test]
    fn base64url_values_may_begin_with_a_dash() {
        use clap::Parser as _;
        let parse = |args: &[&str]| Cli::try_parse_from(rewrite(args)).map(|_| ());
        let digest = "-rQ2x_Zt0uV9yK1mN3pL5oJ7iH8gF6eD4cB2aA0sW1q";
        parse(&["sigil", "operator", "raft", "snapshot", "approve", digest]).unwrap();
        parse(&["sigil", "operator", "rekey", "approve", "--digest", digest]).unwrap();
        parse(&["sigil", "operator", "rekey", "approve", "-digest", digest]).unwrap();
        parse(&["sigil", "kv", "get", "--server-key", digest, "secret/a"]).unwrap();
        parse(&["sigil", "e2e", "get", "--trust", digest, "secret/a"]).unwrap();
        parse(&["sigil", "read", "--wrap-to", digest, "secret/data/a"]).unwrap();
    }

    #[test]
    fn grammar_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }
}
