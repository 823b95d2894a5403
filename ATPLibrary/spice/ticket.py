"""The SPICE ticket: the password, checked first, then RSA-OAEP (SHA-1) encrypted with the server's key.

The link reply carries a 1024-bit RSA public key as a 162-byte DER ``SubjectPublicKeyInfo``.  The plaintext
is the password's UTF-8 bytes plus a NUL; OAEP with SHA-1 on a 1024-bit key takes at most 86 bytes, and
SPICE servers keep only the first 59 characters of a password (QEMU refuses to set a longer one), so a
password is checked against those rules before anything is sent.  Messages never contain the password.
"""

from __future__ import annotations

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ATPLibrary.errors import SpiceProtocolError
from ATPLibrary.spice.protocol import PUB_KEY_SIZE, TICKET_SIZE, SpicePasswordError

#: SPICE servers keep at most this many characters of a password (spice-server's ticket buffer, 60 with NUL).
MAX_PASSWORD_CHARS = 59
#: OAEP-SHA1 on a 1024-bit key: 128 - 2 * 20 - 2 bytes of plaintext.
MAX_PLAINTEXT = TICKET_SIZE - 2 * 20 - 2


def validate_password(password: str) -> bytes:
    """The ticket plaintext (UTF-8 + NUL) of ``password``, or SpicePasswordError naming the broken rule.

    Rules: at most 59 characters (servers keep 59: a 60th would make every login fail), no NUL character
    (it ends the ticket early), valid UTF-8 (no lone surrogates), and the bytes plus NUL fit OAEP's 86.
    """
    if not isinstance(password, str):
        raise SpicePasswordError(f"a SPICE password must be text, got {type(password).__name__}")
    length = len(password)
    if length > MAX_PASSWORD_CHARS:
        raise SpicePasswordError(
            f"the SPICE password has {length} characters; SPICE servers keep at most {MAX_PASSWORD_CHARS}, "
            f"so no client could log in with it. Use a password of at most {MAX_PASSWORD_CHARS} characters "
            "(set it shorter in the domain XML's <graphics passwd=...>). The password was not sent."
        )
    if "\0" in password:
        raise SpicePasswordError(
            f"the SPICE password ({length} characters) contains a NUL character, which would end the ticket "
            "early. The password was not sent."
        )
    try:
        data = password.encode("utf-8")
    except UnicodeEncodeError:
        raise SpicePasswordError(
            f"the SPICE password ({length} characters) is not valid Unicode text (it cannot be encoded as "
            "UTF-8). The password was not sent."
        ) from None
    plaintext = data + b"\0"
    if len(plaintext) > MAX_PLAINTEXT:
        raise SpicePasswordError(
            f"the SPICE password is {len(data)} bytes in UTF-8 ({length} characters); with its NUL the RSA "
            f"ticket holds at most {MAX_PLAINTEXT} bytes. Use fewer non-ASCII characters. The password was not sent."
        )
    return plaintext


def load_server_key(der: bytes) -> rsa.RSAPublicKey:
    """The RSA public key of a link reply (DER SubjectPublicKeyInfo), or a protocol error."""
    if len(der) != PUB_KEY_SIZE:
        raise SpiceProtocolError(f"link reply: public key is {len(der)} bytes, expected {PUB_KEY_SIZE}")
    try:
        key = serialization.load_der_public_key(der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise SpiceProtocolError(f"link reply: the public key is not a DER SubjectPublicKeyInfo ({exc})") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise SpiceProtocolError(f"link reply: the public key is {type(key).__name__}, not RSA")
    if key.key_size != TICKET_SIZE * 8:
        raise SpiceProtocolError(f"link reply: the RSA key has {key.key_size} bits, expected {TICKET_SIZE * 8}")
    return key


def encrypt_ticket(password: str | None, pub_key_der: bytes) -> bytes:
    """The 128 bytes to send after the link reply.

    The password is validated before the key is used.  ``None`` (no password: a server started with
    ``disable-ticketing`` accepts anything) is sent as the encryption of an empty password.
    """
    plaintext = validate_password(password or "")
    key = load_server_key(pub_key_der)
    ticket = key.encrypt(
        plaintext,
        padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None),
    )
    if len(ticket) != TICKET_SIZE:  # pragma: no cover - guaranteed by the key size check
        raise SpiceProtocolError(f"ticket is {len(ticket)} bytes, expected {TICKET_SIZE}")
    return ticket
