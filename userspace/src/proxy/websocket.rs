//! WebSocket frames (RFC 6455) as the proxy relays them.
