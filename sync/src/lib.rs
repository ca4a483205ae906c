//! Everything that crosses the sync link: the state journal's replication (pfsync's role) and
//! configuration replication (XML-RPC's role). Not yet written: see issue 6.
