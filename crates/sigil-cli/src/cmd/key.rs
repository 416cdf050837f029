use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use sigil_crypto::{SecretIdentity, age};
use zeroize::Zeroizing;

use crate::args::KeyCommand;
use crate::keyfile;

pub(crate) fn run(cmd: KeyCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        KeyCommand::Generate { output, passphrase } => {
            let key = SecretIdentity::generate().context("key generation failed")?;
            let mut file = key.to_key_file(&super::data::now_rfc3339());
            if passphrase {
                let pass = keyfile::ask_passphrase(
                    "Passphrase for the new key: ",
                    keyfile::PASSPHRASE_FILE_ENV,
                    true,
                )?;
                file = Zeroizing::new(keyfile::protect(&file, &pass)?);
            }
            match output {
                Some(path) => {
                    keyfile::write_private_file(&path, file.as_bytes())?;
                    println!("{}", key.public());
                }
                None => {
                    eprintln!("Public key: {}", key.public());
                    std::io::stdout()
                        .write_all(file.as_bytes())
                        .context("cannot write to standard output")?;
                }
            }
        }
        KeyCommand::Passwd { file, remove } => {
            let (text, protected) = keyfile::read_key_text(&file)?;
            let contents = if remove {
                if !protected {
                    bail!("{} has no passphrase", file.display());
                }
                text
            } else {
                let pass = keyfile::ask_passphrase(
                    &format!("New passphrase for {}: ", file.display()),
                    keyfile::NEW_PASSPHRASE_FILE_ENV,
                    true,
                )?;
                Zeroizing::new(keyfile::protect(&text, &pass)?)
            };
            keyfile::replace_file(&file, contents.as_bytes(), 0o600)?;
            eprintln!(
                "{}: {}",
                file.display(),
                if remove {
                    "passphrase removed"
                } else {
                    "passphrase set"
                }
            );
        }
        KeyCommand::Public { file } => {
            // A key file, or a file that holds a public identity already (no permission
            // warning for that: nothing in it is secret).
            let path = file
                .to_str()
                .ok_or_else(|| anyhow::anyhow!("{} is not UTF-8", file.display()))?;
            println!("{}", keyfile::read_public(path)?);
        }
        KeyCommand::ExportAge { file, output } => {
            let key = keyfile::read_key(&file)?;
            let recipient = age::recipient_string(key.public().encryption_key());
            let identity = age::identity_string(key.encryption_key());
            let text = zeroize::Zeroizing::new(format!(
                "# created: {}\n# public key: {recipient}\n{}\n",
                super::data::now_rfc3339(),
                identity.as_str()
            ));
            match output {
                Some(path) => {
                    keyfile::write_private_file(&path, text.as_bytes())?;
                    println!("{recipient}");
                }
                None => std::io::stdout()
                    .write_all(text.as_bytes())
                    .context("cannot write to standard output")?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
