/**
 * Hostile and legitimate multipart uploads for the gateway's model check. The client's key may use `eu.allowed`
 * (upstream ID `allowed`); each hostile form also carries `forbidden`, spelled so that some real upstream parser
 * would read it as the `model` field while a naive gateway reads `eu.allowed`. "Read by" names the parsers that
 * were run on the form (python-multipart 0.0.9 and 0.0.34 under starlette, Go 1.26 mime/multipart ReadForm,
 * busboy 1.6, formidable 3, undici's Response.formData in Node 24) and read `forbidden` as `model`.
 * `forbidden` appears nowhere else, so an upstream that receives it was reached by the attack.
 */
export const BOUNDARY = 'XyZb0undary';
export const CONTENT_TYPE = `multipart/form-data; boundary=${BOUNDARY}`;
const B = BOUNDARY;

export interface MultipartCase {
  id: string;
  /** Which parsers read `forbidden` as the model, or why the form is refused. */
  why: string;
  contentType?: string;
  /** latin1: one char per byte. */
  body: string;
  /** The refusal: status, error code, message. */
  expect: { status: number; code: string; message: RegExp };
}

const part = (headers: string, value: string) => `--${B}\r\n${headers}\r\n\r\n${value}\r\n`;
const cd = (params: string) => `Content-Disposition: form-data; ${params}`;
const END = `--${B}--\r\n`;
const FILE = part(`${cd('name="file"; filename="a.wav"')}\r\nContent-Type: audio/wav`, 'RIFF....WAVEfmt ');
const MODEL = part(cd('name="model"'), 'eu.allowed');
const hidden = (headers: string) => MODEL + FILE + part(headers, 'forbidden') + END;

const refused = (message: RegExp) => ({ status: 400, code: 'invalid_multipart', message });
const TWO = refused(/more than one 'model' field/);
const AMBIGUOUS = refused(/ambiguous: it could be read as 'model'/);
const BAD_CD = refused(/Content-Disposition is not `form-data` with unrepeated token or quoted parameters/);
const STRAY_BOUNDARY = refused(/boundary appears other than as a delimiter line/);
const MODEL_HEADERS = refused(/'model' field may only have a Content-Disposition and a text\/plain/);
const badType = (message: RegExp) => ({ status: 400, code: 'invalid_content_type', message });

export const HOSTILE: MultipartCase[] = [
  {
    id: 'a second model part after the file',
    why: 'all six; starlette and formidable keep the last value',
    body: hidden(cd('name="model"')),
    expect: TWO,
  },
  { id: 'unquoted name=model', why: 'all six', body: hidden(cd('name=model')), expect: TWO },
  { id: 'NAME="model"', why: 'all six', body: hidden(cd('NAME="model"')), expect: TWO },
  {
    id: 'lower-case content-disposition',
    why: 'all six',
    body: hidden('content-disposition: form-data; name="model"'),
    expect: TWO,
  },
  {
    id: 'name = "model" (spaces around =)',
    why: 'python-multipart, Go',
    body: hidden(cd('name = "model"')),
    expect: TWO,
  },
  {
    id: 'name=<tab>model',
    why: 'python-multipart, Go, undici',
    body: hidden(cd('name=\tmodel')),
    expect: TWO,
  },
  {
    id: 'two Content-Disposition headers, model last',
    why: 'python-multipart, formidable, undici (the last wins)',
    body: hidden(`${cd('name="notes"')}\r\n${cd('name="model"')}`),
    expect: refused(/more than one Content-Disposition header/),
  },
  {
    id: 'two Content-Disposition headers, model first',
    why: 'Go, busboy (the first wins)',
    body: hidden(`${cd('name="model"')}\r\n${cd('name="notes"')}`),
    expect: refused(/more than one Content-Disposition header/),
  },
  {
    id: 'name repeated, model last',
    why: 'python-multipart, undici (the last wins)',
    body: hidden(cd('name="notes"; name="model"')),
    expect: BAD_CD,
  },
  {
    id: 'name repeated, model first',
    why: 'busboy, formidable (the first wins)',
    body: hidden(cd('name="model"; name="notes"')),
    expect: BAD_CD,
  },
  {
    id: "name*=utf-8''model",
    why: 'python-multipart 0.0.9, Go, undici (RFC 2231)',
    body: hidden(cd("name*=utf-8''model")),
    expect: refused(/name\*=, which is not accepted/),
  },
  {
    id: 'name*0/name*1 continuation',
    why: 'python-multipart 0.0.9, Go',
    body: hidden(cd('name*0="mo"; name*1="del"')),
    expect: refused(/name\*=, which is not accepted/),
  },
  {
    id: 'a model part with a filename',
    why: 'formidable (as a field; the others as a file)',
    body: MODEL + FILE + part(cd('name="model"; filename="m.txt"'), 'forbidden') + END,
    expect: TWO,
  },
  {
    id: 'the only model part has a filename',
    why: 'formidable reads the file content as the model',
    body: FILE + part(cd('name="model"; filename="m.txt"'), 'forbidden') + END,
    expect: refused(/'model' field has a filename/),
  },
  {
    id: 'folded Content-Disposition',
    why: 'Go, busboy',
    body: hidden('Content-Disposition: form-data;\r\n name="model"'),
    expect: refused(/folded over several lines/),
  },
  {
    id: 'space before the colon',
    why: 'undici',
    body: hidden('Content-Disposition : form-data; name="model"'),
    expect: refused(/header line that is not "Name: value"/),
  },
  {
    id: 'attachment; name="model"',
    why: 'python-multipart, formidable',
    body: hidden('Content-Disposition: attachment; name="model"'),
    expect: refused(/Content-Disposition is not form-data/),
  },
  {
    id: 'no disposition type',
    why: 'formidable',
    body: hidden('Content-Disposition: name="model"'),
    expect: BAD_CD,
  },
  {
    id: 'NBSP before an unquoted name',
    why: 'python-multipart 0.0.9 (str.strip)',
    body: hidden(cd('name=\xa0model')),
    expect: BAD_CD,
  },
  {
    id: 'name="model " (trailing space)',
    why: 'none of the six; an application that trims names would',
    body: hidden(cd('name="model "')),
    expect: AMBIGUOUS,
  },
  {
    id: 'name="Model"',
    why: 'an application matching names without case',
    body: hidden(cd('name="Model"')),
    expect: AMBIGUOUS,
  },
  {
    id: 'name="model[]"',
    why: 'PHP- and Rails-style array fields',
    body: hidden(cd('name="model[]"')),
    expect: AMBIGUOUS,
  },
  {
    id: 'name=model inside a quoted filename',
    why: 'formidable (its regex ignores quotes)',
    body: hidden(cd('filename="a;name=model"; name="notes"')),
    expect: AMBIGUOUS,
  },
  {
    id: 'x-name=model',
    why: 'formidable (\\bname=)',
    body: hidden(cd('name="notes"; x-name=model')),
    expect: AMBIGUOUS,
  },
  {
    id: 'escaped backslash before the name',
    why: 'formidable reads a model field; Go, busboy and undici a file named model',
    body: hidden(cd('filename="a\\\\"; name="model"')),
    expect: BAD_CD,
  },
  {
    id: 'backslash escape in the name',
    why: 'parsers unescape differently',
    body: hidden(cd('name="mo\\del"')),
    expect: BAD_CD,
  },
  {
    id: 'NUL after the name',
    why: 'formidable',
    body: hidden(`${cd('name="model"')}\0`),
    expect: refused(/control characters/),
  },
  {
    id: 'CR without LF inside the headers',
    why: 'refused by all, but a line-splitting parser may disagree',
    body: hidden(`X-A: 1\r${cd('name="model"')}`),
    expect: refused(/CR without LF/),
  },
  {
    id: 'headers ended by LF LF',
    why: 'python-multipart, Go, formidable end the headers at the first LF LF',
    body: `${MODEL}--${B}\r\n${cd('name="file"; filename="a"')}\n\n--${B}\r\n${cd('name="model"')}\r\n\r\nforbidden\r\n${END}`,
    expect: refused(/boundary appears inside its headers/),
  },
  {
    id: 'boundary right after the part headers',
    why: 'Go (an empty part whose delimiter shares the blank line)',
    body: `${MODEL}--${B}\r\n${cd('name="file"; filename="a"')}\r\n\r\n--${B}\r\n${cd('name="model"')}\r\n\r\nforbidden\r\n${END}`,
    expect: STRAY_BOUNDARY,
  },
  {
    id: 'spaces after a boundary',
    why: 'python-multipart 0.0.34, Go (transport padding)',
    body: `${MODEL}--${B}\r\n${cd('name="file"; filename="a"')}\r\n\r\nxx\r\n--${B}  \r\n${cd('name="model"')}\r\n\r\nforbidden\r\n${END}`,
    expect: STRAY_BOUNDARY,
  },
  {
    id: 'the boundary as the prefix of a longer line, model hidden in the file',
    why: 'everyone reads file data; the old gateway split there and took the model from it',
    body: `--${B}\r\n${cd('name="file"; filename="a"')}\r\n\r\nxx\r\n--${B}X\r\n${cd('name="model"')}\r\n\r\neu.allowed\r\n--${B}\r\n${cd('name="model"')}\r\n\r\nforbidden\r\n${END}`,
    expect: STRAY_BOUNDARY,
  },
  {
    id: 'LF-only framing',
    why: 'Go (switches to LF lines when the first boundary line ends in LF)',
    body: `--${B}\n${cd('name="model"')}\n\nforbidden\n--${B}\n${cd('name="file"; filename="a"')}\n\nx\n--${B}--\n`,
    expect: refused(/boundary line must end with CRLF/),
  },
  {
    id: 'LF before a boundary inside the file',
    why: 'LF-tolerant parsers',
    body: `${MODEL}--${B}\r\n${cd('name="file"; filename="a"')}\r\n\r\nxx\n--${B}\r\n${cd('name="model"')}\r\n\r\nforbidden\r\n${END}`,
    expect: STRAY_BOUNDARY,
  },
  {
    id: 'a boundary inside the preamble',
    why: 'undici (finds "--boundary" anywhere); Go, busboy, formidable skip the line and read the second part',
    body: `junk--${B}\r\n${cd('name="model"')}\r\n\r\neu.allowed\r\n--${B}\r\n${cd('name="model"')}\r\n\r\nforbidden\r\n${END}`,
    expect: refused(/must start with its boundary line/),
  },
  {
    id: 'a preamble line',
    why: 'Go, busboy, formidable, undici skip it',
    body: `preamble\r\n${part(cd('name="model"'), 'forbidden')}${END}`,
    expect: refused(/must start with its boundary line/),
  },
  {
    id: 'parts after the closing boundary',
    why: 'none of the six, but nothing may follow the end',
    body: MODEL + END + part(cd('name="model"'), 'forbidden') + END,
    expect: refused(/after the closing boundary/),
  },
  {
    id: 'closing boundary without CRLF, then a part',
    why: 'none of the six',
    body: `${MODEL}--${B}--${part(cd('name="model"'), 'forbidden')}${END}`,
    expect: refused(/after the closing boundary/),
  },
  {
    id: 'base64 transfer encoding on the model',
    why: 'undici decodes it (to "forbidden")',
    body: part(`${cd('name="model"')}\r\nContent-Transfer-Encoding: base64`, 'Zm9yYmlkZGVu') + FILE + END,
    expect: MODEL_HEADERS,
  },
  {
    id: 'quoted-printable on the model',
    why: 'Go decodes it',
    body:
      part(`${cd('name="model"')}\r\nContent-Transfer-Encoding: quoted-printable`, 'forbidde=6E') +
      FILE +
      END,
    expect: MODEL_HEADERS,
  },
  {
    id: 'UTF-16 charset on the model',
    why: 'busboy decodes the value with it',
    body: part(`${cd('name="model"')}\r\nContent-Type: text/plain; charset=utf-16le`, 'f\0o\0') + FILE + END,
    expect: MODEL_HEADERS,
  },
  {
    id: 'no closing boundary',
    why: 'python-multipart accepts a form without one',
    body: MODEL + FILE,
    expect: refused(/ends before its closing boundary/),
  },
  {
    id: 'boundary given twice',
    why: 'python-multipart takes the last; the old gateway the first',
    contentType: `multipart/form-data; boundary=AAA; boundary=${B}`,
    body: MODEL + END,
    expect: badType(/not a well-formed media type/),
  },
  {
    id: 'xboundary before boundary',
    why: "the old gateway's regex took xboundary; every upstream takes boundary",
    contentType: `multipart/form-data; xboundary=AAA; boundary=${B}`,
    body: `--AAA\r\n${cd('name="model"')}\r\n\r\neu.allowed\r\n--AAA--\r\n${part(cd('name="model"'), 'forbidden')}${END}`,
    expect: badType(/parameter 'xboundary' is not accepted/),
  },
  {
    id: "boundary*=utf-8''…",
    why: 'python-multipart 0.0.9, Go',
    contentType: `multipart/form-data; boundary*=utf-8''${B}`,
    body: MODEL + END,
    expect: badType(/parameter 'boundary\*' is not accepted/),
  },
  {
    id: 'charset=utf-16 on the form',
    why: 'starlette decodes every field with it',
    contentType: `multipart/form-data; charset=utf-16le; boundary=${B}`,
    body: MODEL + END,
    expect: badType(/only charset accepted is utf-8/),
  },
  {
    id: 'part headers over 8 KiB',
    why: 'limit',
    body: MODEL + part(`${cd('name="notes"')}\r\nX-Pad: ${'a'.repeat(9000)}`, 'x') + END,
    expect: refused(/headers are larger than 8 KiB/),
  },
  {
    id: 'a header line that never ends',
    why: 'limit (refused before the body limit)',
    body: `${MODEL}--${B}\r\nX-Pad: ${'a'.repeat(20_000)}`,
    expect: refused(/headers are larger than 8 KiB/),
  },
  {
    id: 'more than 128 parts',
    why: 'limit',
    body: MODEL + part(cd('name="n"'), 'x').repeat(128) + END,
    expect: refused(/more than 128 parts/),
  },
  {
    id: 'a model value over 1 KiB',
    why: 'limit',
    body: part(cd('name="model"'), 'm'.repeat(2000)) + END,
    expect: refused(/'model' field is longer than 1024 bytes/),
  },
  {
    id: 'an empty model',
    why: 'no model',
    body: part(cd('name="model"'), '  ') + FILE + END,
    expect: { status: 400, code: 'missing_model', message: /must name a model/ },
  },
];

/** Forms real clients send (shapes taken from undici's FormData, curl, httpx, requests, Go's multipart.Writer). */
export const LEGITIMATE: { id: string; contentType: string; body: string }[] = [
  {
    id: 'undici FormData, file first, percent-encoded filename',
    contentType: 'multipart/form-data; boundary=----formdata-undici-068911094677',
    body:
      '------formdata-undici-068911094677\r\nContent-Disposition: form-data; name="file"; filename="n\xc3\xa4me %22quoted%22; name=x.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n' +
      '------formdata-undici-068911094677\r\nContent-Disposition: form-data; name="model"\r\n\r\neu.allowed\r\n' +
      '------formdata-undici-068911094677\r\nContent-Disposition: form-data; name="timestamp_granularities[]"\r\n\r\nword\r\n' +
      '------formdata-undici-068911094677--',
  },
  {
    id: 'curl -F',
    contentType: 'multipart/form-data; boundary=------------------------fe6e33263dd89a4d',
    body:
      '--------------------------fe6e33263dd89a4d\r\nContent-Disposition: form-data; name="model"\r\n\r\neu.allowed\r\n' +
      '--------------------------fe6e33263dd89a4d\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: application/octet-stream\r\n\r\nRIFF\r\n' +
      '--------------------------fe6e33263dd89a4d--\r\n',
  },
  {
    id: 'httpx (the OpenAI Python SDK)',
    contentType: 'multipart/form-data; boundary=196603c4608b89bd30052d230a899e2d',
    body:
      '--196603c4608b89bd30052d230a899e2d\r\nContent-Disposition: form-data; name="model"\r\n\r\neu.allowed\r\n' +
      '--196603c4608b89bd30052d230a899e2d\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\nContent-Type: audio/wav\r\n\r\nRIFF\r\n' +
      '--196603c4608b89bd30052d230a899e2d--\r\n',
  },
  {
    id: 'Go multipart.Writer, quoted boundary, text/plain model',
    contentType: `multipart/form-data; charset=utf-8; boundary="${B}"`,
    body:
      part(`${cd('name="file"; filename="a.wav"')}\r\nContent-Type: application/octet-stream`, 'RIFF') +
      part(`${cd('name="model"')}\r\nContent-Type: text/plain; charset=utf-8`, 'eu.allowed') +
      END,
  },
  {
    id: 'unquoted name=model, upper-case BOUNDARY and header',
    contentType: `Multipart/Form-Data; BOUNDARY=${B}`,
    body: part('CONTENT-DISPOSITION: FORM-DATA; NAME=model', ' eu.allowed ') + FILE + END,
  },
];
