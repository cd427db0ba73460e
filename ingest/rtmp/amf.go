package rtmp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// AMF0 type markers.
const (
	amfNumber      = 0x00
	amfBoolean     = 0x01
	amfString      = 0x02
	amfObject      = 0x03
	amfMovieClip   = 0x04
	amfNull        = 0x05
	amfUndefined   = 0x06
	amfReference   = 0x07
	amfECMAArray   = 0x08
	amfObjectEnd   = 0x09
	amfStrictArray = 0x0a
	amfDate        = 0x0b
	amfLongString  = 0x0c
	amfUnsupported = 0x0d
	amfXMLDocument = 0x0f
	amfTypedObject = 0x10
	amfAVMPlus     = 0x11
)

// amfMaxDepth bounds the nesting of objects and arrays.
const amfMaxDepth = 16

var errAMFShort = errors.New("amf0: truncated value")

// amfProp is one property of an AMF0 object or ECMA array.
type amfProp struct {
	Key   string
	Value any
}

// amfObj is an AMF0 object or ECMA array, properties in wire order.
// Values are float64, bool, string, nil (null, undefined, unsupported),
// amfObj or []any (strict array).
type amfObj []amfProp

// get returns the first property called key.
func (o amfObj) get(key string) (any, bool) {
	for _, p := range o {
		if p.Key == key {
			return p.Value, true
		}
	}
	return nil, false
}

func (o amfObj) str(key string) string {
	v, _ := o.get(key)
	s, _ := v.(string)
	return s
}

func (o amfObj) num(key string) (float64, bool) {
	v, _ := o.get(key)
	f, ok := v.(float64)
	return f, ok
}

// amfDecodeAll decodes the AMF0 values making up a command or data message.
func amfDecodeAll(b []byte) ([]any, error) {
	var out []any
	for len(b) > 0 {
		v, n, err := amfDecode(b, 0)
		if err != nil {
			return out, err
		}
		out = append(out, v)
		b = b[n:]
	}
	return out, nil
}

// amfDecode decodes one value and returns it with the number of bytes used.
func amfDecode(b []byte, depth int) (any, int, error) {
	if len(b) < 1 {
		return nil, 0, errAMFShort
	}
	if depth > amfMaxDepth {
		return nil, 0, fmt.Errorf("amf0: nesting deeper than %d", amfMaxDepth)
	}
	switch b[0] {
	case amfNumber:
		if len(b) < 9 {
			return nil, 0, errAMFShort
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b[1:])), 9, nil
	case amfBoolean:
		if len(b) < 2 {
			return nil, 0, errAMFShort
		}
		return b[1] != 0, 2, nil
	case amfString:
		s, n, err := amfReadString(b[1:], 2)
		return s, 1 + n, err
	case amfLongString, amfXMLDocument:
		s, n, err := amfReadString(b[1:], 4)
		return s, 1 + n, err
	case amfNull, amfUndefined, amfUnsupported:
		return nil, 1, nil
	case amfReference:
		if len(b) < 3 {
			return nil, 0, errAMFShort
		}
		return nil, 3, nil // references to earlier objects are not resolved
	case amfDate:
		if len(b) < 11 {
			return nil, 0, errAMFShort
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b[1:])), 11, nil
	case amfObject:
		o, n, err := amfReadProps(b[1:], depth)
		return o, 1 + n, err
	case amfECMAArray:
		if len(b) < 5 {
			return nil, 0, errAMFShort
		}
		// The count is advisory (encoders get it wrong); the end marker rules.
		o, n, err := amfReadProps(b[5:], depth)
		return o, 5 + n, err
	case amfTypedObject:
		_, cn, err := amfReadString(b[1:], 2)
		if err != nil {
			return nil, 0, err
		}
		o, n, err := amfReadProps(b[1+cn:], depth)
		return o, 1 + cn + n, err
	case amfStrictArray:
		if len(b) < 5 {
			return nil, 0, errAMFShort
		}
		count := binary.BigEndian.Uint32(b[1:])
		pos := 5
		// Each element takes at least one byte: bound the allocation by the input.
		arr := make([]any, 0, min(int(count), len(b)-pos))
		for i := uint32(0); i < count; i++ {
			v, n, err := amfDecode(b[pos:], depth+1)
			if err != nil {
				return nil, 0, err
			}
			arr = append(arr, v)
			pos += n
		}
		return arr, pos, nil
	}
	return nil, 0, fmt.Errorf("amf0: unsupported type 0x%02x", b[0])
}

func amfReadString(b []byte, lenSize int) (string, int, error) {
	if len(b) < lenSize {
		return "", 0, errAMFShort
	}
	var l uint64
	if lenSize == 2 {
		l = uint64(binary.BigEndian.Uint16(b))
	} else {
		l = uint64(binary.BigEndian.Uint32(b))
	}
	if uint64(len(b)-lenSize) < l {
		return "", 0, errAMFShort
	}
	return string(b[lenSize : lenSize+int(l)]), lenSize + int(l), nil
}

// amfReadProps reads key/value pairs up to the object end marker (00 00 09).
func amfReadProps(b []byte, depth int) (amfObj, int, error) {
	var o amfObj
	pos := 0
	for {
		if len(b)-pos >= 3 && b[pos] == 0 && b[pos+1] == 0 && b[pos+2] == amfObjectEnd {
			return o, pos + 3, nil
		}
		key, n, err := amfReadString(b[pos:], 2)
		if err != nil {
			return nil, 0, err
		}
		pos += n
		v, n, err := amfDecode(b[pos:], depth+1)
		if err != nil {
			return nil, 0, err
		}
		pos += n
		o = append(o, amfProp{Key: key, Value: v})
	}
}

// amfEncode appends the AMF0 encoding of values (float64, int, bool, string,
// nil, amfObj) to b.
func amfEncode(b []byte, values ...any) []byte {
	for _, v := range values {
		switch v := v.(type) {
		case nil:
			b = append(b, amfNull)
		case float64:
			b = append(b, amfNumber)
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(v))
		case int:
			b = append(b, amfNumber)
			b = binary.BigEndian.AppendUint64(b, math.Float64bits(float64(v)))
		case bool:
			x := byte(0)
			if v {
				x = 1
			}
			b = append(b, amfBoolean, x)
		case string:
			if len(v) > math.MaxUint16 {
				v = v[:math.MaxUint16]
			}
			b = append(b, amfString)
			b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
			b = append(b, v...)
		case amfObj:
			b = append(b, amfObject)
			for _, p := range v {
				k := p.Key
				if len(k) > math.MaxUint16 {
					k = k[:math.MaxUint16]
				}
				b = binary.BigEndian.AppendUint16(b, uint16(len(k)))
				b = append(b, k...)
				b = amfEncode(b, p.Value)
			}
			b = append(b, 0, 0, amfObjectEnd)
		default:
			panic(fmt.Sprintf("amf0: cannot encode %T", v))
		}
	}
	return b
}
