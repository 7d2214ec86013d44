"""mssp relay: the blind rendezvous server, the client-site agent, and the core-side client."""
