// What `cargo xtask web` writes above sw.js in the bundle (xtask/src/bundle.rs).
/** This build's content-hashed files, relative to the worker. */
declare const ASSETS: string[];
/** This build's name, which names its cache. */
declare const BUILD: string;
