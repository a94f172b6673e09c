/**
 * ZIP archives as archivers write them (local file headers, stored or deflated data, a central
 * directory), small enough to build in a test: an .xlsx, an .ods or a .numbers file is a ZIP
 * archive, and the reader must tell them apart from their first bytes.
 */
import { deflateRawSync } from 'node:zlib';

export interface ZipEntry {
  name: string;
  content: string | Buffer;
  /** stored uncompressed (an OpenDocument file's `mimetype` must be) instead of deflated */
  stored?: boolean;
}

export interface ZipOptions {
  /**
   * Sizes and CRC after each entry's data (flag bit 3), as streaming writers (Java's, .NET's) do:
   * the local header then says nothing of where the next entry starts.
   */
  descriptors?: boolean;
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(data: Buffer): number {
  let c = 0xffffffff;
  for (const byte of data) c = (CRC_TABLE[(c ^ byte) & 0xff] as number) ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

export function zipArchive(entries: readonly ZipEntry[], opts: ZipOptions = {}): Buffer {
  const parts: Buffer[] = [];
  const central: Buffer[] = [];
  let offset = 0;
  for (const entry of entries) {
    const name = Buffer.from(entry.name, 'utf8');
    const content = typeof entry.content === 'string' ? Buffer.from(entry.content, 'utf8') : entry.content;
    const method = entry.stored ? 0 : 8;
    const data = entry.stored ? content : deflateRawSync(content);
    const crc = crc32(content);
    const flags = 0x0800 | (opts.descriptors ? 0x0008 : 0); // names in UTF-8
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4); // version needed: 2.0
    local.writeUInt16LE(flags, 6);
    local.writeUInt16LE(method, 8);
    local.writeUInt32LE(opts.descriptors ? 0 : crc, 14);
    local.writeUInt32LE(opts.descriptors ? 0 : data.length, 18);
    local.writeUInt32LE(opts.descriptors ? 0 : content.length, 22);
    local.writeUInt16LE(name.length, 26);
    parts.push(local, name, data);
    let written = local.length + name.length + data.length;
    if (opts.descriptors) {
      const descriptor = Buffer.alloc(16);
      descriptor.writeUInt32LE(0x08074b50, 0);
      descriptor.writeUInt32LE(crc, 4);
      descriptor.writeUInt32LE(data.length, 8);
      descriptor.writeUInt32LE(content.length, 12);
      parts.push(descriptor);
      written += descriptor.length;
    }
    const record = Buffer.alloc(46);
    record.writeUInt32LE(0x02014b50, 0);
    record.writeUInt16LE(20, 4);
    record.writeUInt16LE(20, 6);
    record.writeUInt16LE(flags, 8);
    record.writeUInt16LE(method, 10);
    record.writeUInt32LE(crc, 16);
    record.writeUInt32LE(data.length, 20);
    record.writeUInt32LE(content.length, 24);
    record.writeUInt16LE(name.length, 28);
    record.writeUInt32LE(offset, 42);
    central.push(record, name);
    offset += written;
  }
  const directory = Buffer.concat(central);
  const end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0);
  end.writeUInt16LE(entries.length, 8);
  end.writeUInt16LE(entries.length, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, directory, end]);
}

/** The parts an Excel workbook (.xlsx) starts with, in the order Excel writes them. */
export function xlsxEntries(): ZipEntry[] {
  return [
    {
      name: '[Content_Types].xml',
      content:
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">' +
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>' +
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/></Types>',
    },
    {
      name: '_rels/.rels',
      content:
        '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\r\n<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">' +
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>',
    },
    { name: 'xl/workbook.xml', content: '<workbook><sheets><sheet name="users" sheetId="1" r:id="rId1"/></sheets></workbook>' },
    {
      name: 'xl/worksheets/sheet1.xml',
      content: '<worksheet><sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>username</t></is></c></row></sheetData></worksheet>',
    },
    { name: 'docProps/app.xml', content: '<Properties><Application>Microsoft Excel</Application></Properties>' },
  ];
}
