#!/usr/bin/env python3
"""Opens and writes Sigil's passphrase-protected key files with rage (pyrage), an age
implementation independent of Sigil's:

    age_passphrase.py decrypt FILE PASSPHRASE_FILE   prints the plaintext
    age_passphrase.py encrypt FILE PASSPHRASE_FILE   reads the plaintext on standard input and
                                                     writes FILE, armored (age's ASCII armor)

The passphrase file's one trailing newline is not part of the passphrase, as in Sigil.
"""
import base64
import sys

from pyrage import passphrase


def read_passphrase(path):
    with open(path) as f:
        text = f.read()
    return text[:-1] if text.endswith("\n") else text


def main():
    mode, path, pass_file = sys.argv[1:4]
    secret = read_passphrase(pass_file)
    if mode == "decrypt":
        with open(path, "rb") as f:
            sys.stdout.buffer.write(passphrase.decrypt(f.read(), secret))
    elif mode == "encrypt":
        binary = passphrase.encrypt(sys.stdin.buffer.read(), secret)
        encoded = base64.b64encode(binary).decode()
        lines = [encoded[i : i + 64] for i in range(0, len(encoded), 64)]
        armored = "-----BEGIN AGE ENCRYPTED FILE-----\n" + "\n".join(lines)
        armored += "\n-----END AGE ENCRYPTED FILE-----\n"
        with open(path, "x") as f:
            f.write(armored)
    else:
        sys.exit(f"unknown mode {mode}")


if __name__ == "__main__":
    main()
