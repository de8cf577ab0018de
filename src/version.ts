/** How this server names itself in `/federation/v1/version` and `Server` headers. */
export const SERVER_SOFTWARE = "Axon";
export const SERVER_VERSION = "0.1.0";
