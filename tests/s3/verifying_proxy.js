// A strict S3 front for tests: s3rver does not check signatures, so every request passes through
// this proxy first. It recomputes the AWS Signature V4 with aws4 (an implementation independent of
// backupctl's libcurl signing) over exactly the headers the client says it signed, checks the
// declared payload hash against the body, and answers 403 SignatureDoesNotMatch on any mismatch.
// Otherwise it forwards the request to s3rver unchanged.
//   node verifying_proxy.js UPSTREAM_PORT ACCESS_KEY SECRET_KEY REGION
// Prints "proxy listening on PORT" once ready. Counts rejections in GET /__proxy/rejections.
'use strict';
const http = require('http');
const crypto = require('crypto');
const aws4 = require('aws4');

const [upstreamPort, accessKey, secretKey, region] = process.argv.slice(2);
let rejections = 0;

function reject(res, status, code, message) {
  rejections++;
  res.writeHead(status, { 'Content-Type': 'application/xml' });
  res.end(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>${message}</Message></Error>`);
}

const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    if (req.url === '/__proxy/rejections') {
      res.writeHead(200);
      res.end(String(rejections));
      return;
    }
    const body = Buffer.concat(chunks);
    const auth = req.headers['authorization'] || '';
    const m = /^AWS4-HMAC-SHA256 Credential=([^/]+)\/(\d{8})\/([^/]+)\/s3\/aws4_request, ?SignedHeaders=([^,]+), ?Signature=([0-9a-f]{64})$/.exec(auth);
    if (!m) return reject(res, 403, 'AccessDenied', 'missing or malformed SigV4 Authorization header');
    const [, keyId, , credRegion, signedList, signature] = m;
    if (keyId !== accessKey) return reject(res, 403, 'InvalidAccessKeyId', 'unknown access key');
    if (credRegion !== region) return reject(res, 403, 'AuthorizationHeaderMalformed', 'wrong region');
    const declared = req.headers['x-amz-content-sha256'];
    if (!declared) return reject(res, 400, 'InvalidRequest', 'missing x-amz-content-sha256');
    if (declared !== 'UNSIGNED-PAYLOAD' &&
        declared !== crypto.createHash('sha256').update(body).digest('hex')) {
      return reject(res, 400, 'XAmzContentSHA256Mismatch', 'the body does not match x-amz-content-sha256');
    }
    const signed = signedList.split(';');
    if (!signed.includes('host') || !signed.includes('x-amz-date') || !signed.includes('x-amz-content-sha256')) {
      return reject(res, 403, 'AccessDenied', 'host, x-amz-date and x-amz-content-sha256 must be signed');
    }
    const headers = {};
    const extra = {};
    for (const name of signed) {
      if (req.headers[name] === undefined) return reject(res, 403, 'AccessDenied', `signed header ${name} is missing`);
      headers[name] = req.headers[name];
      extra[name] = true;
    }
    const opts = {
      host: req.headers.host, method: req.method, path: req.url, service: 's3', region,
      headers, extraHeadersToInclude: extra,
    };
    aws4.sign(opts, { accessKeyId: accessKey, secretAccessKey: secretKey });
    const expected = /Signature=([0-9a-f]{64})/.exec(opts.headers.Authorization)[1];
    if (expected !== signature) {
      return reject(res, 403, 'SignatureDoesNotMatch', 'the request signature we calculated does not match the signature you provided');
    }
    const up = http.request({ host: '127.0.0.1', port: upstreamPort, method: req.method, path: req.url, headers: req.headers },
      (ures) => {
        res.writeHead(ures.statusCode, ures.headers);
        ures.pipe(res);
        // The server died mid-response: drop the client's connection too, as a dead server would.
        ures.on('aborted', () => res.destroy());
        ures.on('error', () => res.destroy());
      });
    up.on('error', () => {
      if (res.headersSent) return res.destroy();
      res.writeHead(502);
      res.end();
    });
    up.end(body);
  });
});
server.listen(0, '127.0.0.1', () => console.log('proxy listening on ' + server.address().port));
