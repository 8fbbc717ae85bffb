"""The ways in: chat (websocket), e-mail, callback requests."""
