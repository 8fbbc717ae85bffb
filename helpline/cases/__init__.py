"""Cases: the unit of encryption, retention, access control and audit."""
