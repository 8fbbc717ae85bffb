"""The anonymous web chat: victims' HTTP endpoints and the chat websocket."""
