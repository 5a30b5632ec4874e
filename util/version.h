/*
 * version.h - the one version string every vbdfs program prints for
 * --version (and vbdfs puts in its start-up log line).  Bump it here.
 */
#ifndef VBDFS_VERSION_H
#define VBDFS_VERSION_H

#define VBDFS_VERSION "0.1"

#endif
